# CoapLink's downlink (tbdevice/link.py: start_downlink, keep_downlink, stop_downlink), loaded
# with Device.subscribe(): shared attributes and server-side RPC as two RFC 7641 observations
# (spec §6, §7), each with its own token (one token for both would cancel the first, spec §6.3).
import time

try:
    from micropython import const
except ImportError:  # CPython (type checks)

    def const(x):
        return x


from coap import message as m
from coap.errors import CoapError
from coap.observe import Observation
from tbdevice import errors
from tbdevice.coaplink import neutral
from tbdevice.link import ATTRIBUTE_UPDATE, ATTRIBUTES, RPC_CALL, RPC_REQUEST

_MAX_AGE_MARGIN_MS = const(2000)  # RFC 7641 §3.3.1: re-register a little after Max-Age has run out


def _due(o, now):
    # Not registered, or its Max-Age (plus a margin), or the silence limit when the server
    # gives none, ran out since the last notification.
    if not o.active:
        return True
    limit = o.max_age_ms + _MAX_AGE_MARGIN_MS if o.max_age_ms else o.silence_ms
    return limit and time.ticks_diff(now, o.last_ms) > limit


class Observations:
    """Part of CoapLink, kept apart so that a device that never subscribes does not load it
    (nor coap.observe). put(kind, payload, initial) queues what arrives."""

    def __init__(self, link, put, silence_ms):
        self.link = link

        def on_attr(msg, initial):
            if msg.code == m.CONTENT:
                put(ATTRIBUTE_UPDATE, msg.payload, initial)
            elif not initial:  # 2.02 Deleted (spec §6.4), 4.xx, 5.xx: the observation has ended
                self._end("attributes", msg.code)

        def on_rpc(msg, initial):
            if msg.code == m.CONTENT and msg.payload:
                put(RPC_REQUEST, msg.payload, initial)
            elif msg.code != m.VALID and msg.code != m.CONTENT and not initial:
                self._end("rpc", msg.code)
            # 2.03 Valid with no payload opens the RPC subscription (spec §7)

        cl = link.client
        routes = link.routes
        self.obs = (Observation(cl, routes[ATTRIBUTES], on_attr, (), link.con, silence_ms),
                    Observation(cl, routes[RPC_CALL], on_rpc, (), link.con, silence_ms))

    def subscribed(self):
        return self.obs[0].active and self.obs[1].active

    def _end(self, what, code):
        link = self.link
        link.say("%s: subscription ended (%s), re-subscribing" % (what, m.code_str(code)))
        if link.ended is not None:
            link.ended()

    def keep(self, renew):
        """None when both observations stand; else the coroutine registering those that do
        not (all of them when renew: a new socket): it returns 0 when both stand, -1 when
        the server did not answer, or the code of the answer that declined."""
        now = time.ticks_ms()
        for o in self.obs:
            if renew or _due(o, now):
                return self._register(renew)
        return None

    async def _register(self, renew):
        for o in self.obs:
            if renew or _due(o, time.ticks_ms()):
                try:
                    msg = await o.register()
                except CoapError as e:
                    o.active = False
                    e = o.error = neutral(e, self.link.client.transport.secure)
                    if isinstance(e, OSError):
                        raise e
                    return -1 if isinstance(e, errors.Timeout) else m.BAD_REQUEST
                if not o.active:
                    return msg.code
        return 0

    async def stop(self):
        # Observation.cancel() waits briefly for each deregistration's ACK, never for a response
        # (ThingsBoard sends none, spec §6.4).
        for o in self.obs:
            try:
                await o.cancel()
            except (CoapError, OSError) as e:
                self.link.say("unsubscribe: %r" % e)
