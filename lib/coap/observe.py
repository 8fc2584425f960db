# Client side of RFC 7641: register with Observe=0, receive notifications on the same
# token, order them (§3.4), deregister with Observe=1 (§3.6).
import time

from coap import message as m
from coap.client import Route, _Exchange
from coap.errors import Timeout

_2_23 = 1 << 23
_FRESH_MS = 128000  # §3.4: a notification more than 128 s after the last is fresh anyway


class Observation:
    """`callback(msg)` runs for the first response and each fresh notification, in the
    receive loop: keep it short (set an Event, queue the message). After a response
    that is not 2.xx, or one without Observe, `active` is False: re-register if needed."""

    def __init__(self, client, route, callback, options=(), con=True):
        self.client = client
        self.route = route if isinstance(route, Route) else Route(route)
        self.callback = callback
        self.options = options
        self.con = con
        self.active = False
        self.token = None
        self.last = -1
        self.last_ms = 0
        self.notifications = 0

    async def register(self, timeout_ms=None):
        cl = self.client
        ex = _Exchange(cl.new_token(), self._on)
        self.token = ex.token
        self.last = -1
        opts = [(m.OBSERVE, 0)] + list(self.options)
        msg = await cl.exchange(m.GET, self.route, b"", opts, self.con, timeout_ms, ex=ex)
        obs = msg.uint(m.OBSERVE)
        # A response without Observe means the server declined the registration (§3.1).
        self.active = obs is not None and msg.code >> 5 == 2
        if self.active:
            self.last = obs
            self.last_ms = time.ticks_ms()
        else:
            cl._by_token.pop(ex.token, None)
        self.callback(msg)
        return msg

    def _on(self, msg):
        v = msg.uint(m.OBSERVE)
        if msg.code >> 5 != 2 or v is None:
            # 2.02 Deleted, 4.04, 5.00 ... or a plain response: the observation is over (§3.2).
            self._end()
            self.callback(msg)
            return
        now = time.ticks_ms()
        v1 = self.last
        if not (
            (v1 < v and v - v1 < _2_23)
            or (v1 > v and v1 - v > _2_23)
            or time.ticks_diff(now, self.last_ms) > _FRESH_MS
        ):
            return  # stale or duplicate: an older notification than the one we have (§3.4)
        self.last = v
        self.last_ms = now
        self.notifications += 1
        self.callback(msg)

    def _end(self):
        self.active = False
        if self.token is not None:
            self.client._by_token.pop(self.token, None)

    async def cancel(self, timeout_ms=None):
        """Deregister explicitly: GET with Observe=1 and the same token (§3.6)."""
        if self.token is None:
            return None
        self._end()
        opts = [(m.OBSERVE, 1)] + list(self.options)
        try:
            return await self.client.exchange(m.GET, self.route, b"", opts, self.con, timeout_ms or 5000, token=self.token)
        except Timeout:
            return None  # ThingsBoard answers the deregistration with an empty ACK only (spec §6.4)
        finally:
            self.token = None
