# MqttLink's downlink (tbdevice/link.py: start_downlink, keep_downlink), loaded with
# Device.subscribe(): shared-attribute updates and server-side RPC over MQTT (wire-mqtt §6, §7).
# ThingsBoard keeps nothing across connections (§2.5), so each new connection gets one SUBSCRIBE for
# both topics (once: every RPC SUBSCRIBE makes the server send each pending RPC again, §7), then an
# attribute request standing in for CoAP's first notification, since no snapshot comes (§6).
import asyncio

try:
    from micropython import const
except ImportError:  # CPython (type checks)

    def const(x):
        return x


from tbdevice import errors
from tbdevice import mqttcodec as mc
from tbdevice.jsonenc import dumps
from tbdevice.link import ATTRIBUTE_UPDATE, ATTRIBUTES_GET, RPC_REQUEST

_ETIMEDOUT = const(110)
_REFUSED_FILTER = const(0x80)
_FILTERS = (("v1/devices/me/attributes", 1), ("v1/devices/me/rpc/request/+", 1))


class Subscriptions:
    """Part of MqttLink (it uses the link's own members), kept apart so that a device that never
    subscribes does not load it."""

    def __init__(self, link, put):
        self.link = link
        self.put = put  # the Downlink's: put(kind, payload, initial)
        self.subbed = -1  # the connection (link.gen) the subscriptions were made on
        self.state = -1  # the connection the shared attributes were read on
        self.busy = False

    def subscribed(self):
        g = self.link.gen
        return self.link.alive and self.subbed == g and self.state == g

    def rpc(self, buf, a, b, p, end):
        # The id is only in the topic (wire-mqtt §7): into the payload, where the codec reads it;
        # a protobuf profile's request goes with it, (id, bytes), to ProtoCodec.rpc_request (§12.2).
        rid = bytes(buf[a:b])
        body = buf[p:end]
        if not rid.isdigit():
            return
        if self.link.codec.name != "json":
            self.put(RPC_REQUEST, (int(rid), bytes(body)), False)
        elif body[:1] == b"{":
            self.put(RPC_REQUEST, b'{"id":' + rid + (b"," if len(body) > 2 else b"") + body[1:], False)

    def keep(self):
        """None while this connection's subscriptions and attribute state stand; else the
        coroutine making them: 0 when done, 129 when the credentials are refused, -1 for no
        answer, 128 for a refused filter or a state the device cannot take. A lost connection
        raises OSError (a link fault)."""
        if self.busy or (self.link.unusable() is None and self.subscribed()):
            return None
        return self._make()

    async def _make(self):
        link = self.link
        if link.unusable() is not None:
            try:
                await link.ready()
            except errors.Unauthorized:
                return 129
        self.busy = True
        try:
            gen = link.gen
            if self.subbed != gen:
                pid = link.next_pid()
                link.suback = None
                link.wire.write(mc.subscribe(pid, _FILTERS))
                try:
                    await asyncio.wait_for_ms(link.until(lambda: link.suback is not None, gen), link.timeout_ms)
                except asyncio.TimeoutError:  # no SUBACK on a live connection: a dead one
                    link.lost("no SUBACK in %d ms" % link.timeout_ms)
                    raise OSError(_ETIMEDOUT, "mqtt: no SUBACK")
                got = link.suback
                if got[0] != pid or _REFUSED_FILTER in got[1]:
                    link.say("mqtt: subscriptions refused: %r" % (got,))
                    return 128
                self.subbed = gen
            try:
                state = await link.request(ATTRIBUTES_GET, b"", None, link.timeout_ms)
                shared = link.codec.attribute_response(state)["shared"] if state else {}
            except errors.Timeout:
                return -1
            except errors.Unauthorized:
                return 129
            except errors.TbError as e:  # an answer the device cannot take (too large): tried again later
                link.say("mqtt: attribute state: %s" % e)
                return 128
            if link.subscriptions is self and gen == link.gen:
                # JSON text for the JSON codec; a protobuf profile's codec takes the dict as it is
                self.put(ATTRIBUTE_UPDATE, dumps(shared) if link.codec.name == "json" else shared, True)
                self.state = gen
            return 0
        finally:
            self.busy = False
