# Client side of RFC 7641: register with Observe=0, receive notifications on the same
# token, order them (§3.4), deregister with Observe=1 (§3.6). Keeping an observation alive
# (registering again when it ended, after Max-Age or a silence limit, after a reconnect) is
# the caller's: tbdevice.supervisor does it for the device, from `active`, `max_age_ms`,
# `last_ms` and `silence_ms`.
import asyncio
import time

from micropython import const

from coap import message as m
from coap.route import Route
from coap.errors import CoapError, Timeout

_2_23 = const(1 << 23)
_FRESH_MS = const(128000)  # §3.4: a notification more than 128 s after the last is fresh anyway


class Observation:
    """`callback(msg, initial)` runs for the registration's response (initial=True) and
    for each fresh notification and the response that ends the observation
    (initial=False). It runs in the receive loop: keep it short (queue the message).

    register() again (same token) to keep it alive; cancel() to end it. `silence_ms` (0:
    never) is kept for the caller: how long an observation without a Max-Age of its own
    may stay silent before it is registered again."""

    def __init__(self, client, route, callback, options=(), con=True, silence_ms=0):
        self.client = client
        self.route = route if isinstance(route, Route) else Route(route)
        self.callback = callback
        self.options = [o for o in options if o[0] != m.OBSERVE]
        self.con = con
        self.silence_ms = silence_ms
        self.active = False
        self.token = None
        self.last = -1
        self.last_ms = 0
        self.max_age_ms = 0
        self.notifications = 0
        self.registrations = 0
        self.error = None

    async def register(self, timeout_ms=None):
        """One registration; returns the response. `active` tells whether the server
        accepted it: a response without Observe is a declined registration (§3.1)."""
        cl = self.client
        if self.token is None:
            self.token = cl.new_token()  # kept for re-registrations (§3.3.1)
        self.last = -1  # a re-registration restarts the server's counter (spec §6.2)
        opts = [(m.OBSERVE, 0)] + self.options
        msg = await cl.exchange(m.GET, self.route, b"", opts, self.con, timeout_ms, self.token, self._on)
        obs = msg.uint(m.OBSERVE)
        self.active = obs is not None and msg.code >> 5 == 2
        self.registrations += 1
        if self.active:
            self._seen(obs, msg)
        else:
            cl.forget(self.token)
        b2 = msg.uint(m.BLOCK2)
        if b2 is not None and b2 & 8:
            msg = await self._rest(msg)
        self.callback(msg, True)
        return msg

    def _seen(self, v, msg):
        self.last = v
        self.last_ms = time.ticks_ms()
        age = msg.uint(m.MAX_AGE)
        self.max_age_ms = age * 1000 if age is not None else 0

    async def _rest(self, msg):
        # The rest of a block-wise notification: plain GETs for block 1.. with fresh
        # tokens, never the observation's token (RFC 7959 §2.6).
        from coap import blockwise

        return await blockwise.follow(self.client, m.GET, self.route, self.options, self.con, None, None, msg)

    async def _rest_then_deliver(self, msg):
        try:
            self.callback(await self._rest(msg), False)
        except (CoapError, OSError) as e:
            self.error = e

    def _on(self, msg):
        v = msg.uint(m.OBSERVE)
        if msg.code >> 5 != 2 or v is None:
            # 2.02 Deleted (ThingsBoard ending it), 4.04, 5.00, or a plain response:
            # the observation is over (§3.2); the caller registers again.
            self._end()
            self.callback(msg, False)
            return
        v1 = self.last
        if not (
            (v1 < v and v - v1 < _2_23)
            or (v1 > v and v1 - v > _2_23)
            or time.ticks_diff(time.ticks_ms(), self.last_ms) > _FRESH_MS
        ):
            return  # older than the one we have, or a duplicate (§3.4)
        self._seen(v, msg)
        self.notifications += 1
        b2 = msg.uint(m.BLOCK2)
        if b2 is not None and b2 & 8:
            asyncio.create_task(self._rest_then_deliver(msg))
            return
        self.callback(msg, False)

    def _end(self):
        self.active = False
        if self.token is not None:
            self.client.forget(self.token)

    async def cancel(self, timeout_ms=250):
        """Deregister explicitly: GET with Observe=1 and the same token (§3.6).
        Waits until the server acknowledges it, at most timeout_ms, never for a response:
        ThingsBoard acts on the request at once but answers only with an empty ACK 500 ms
        later (spec §6.4), and a deregistration that was lost costs nothing (the next
        notification gets RST, which ends the observation too, §3.6). Returns the response
        when one came piggybacked in the ACK, else None."""
        was = self.active
        self._end()
        if self.token is None or not was:
            return None
        opts = [(m.OBSERVE, 1)] + self.options
        cl = self.client
        try:
            return await cl.exchange(m.GET, self.route, b"", opts, self.con, timeout_ms, self.token, None, True)
        except Timeout:
            return None
        finally:
            cl.forget(self.token)
