# The ThingsBoard device API's routes over CoAP (spec §2): which method and path each
# operation takes, which codes mean success, and the downlink as two RFC 7641
# observations (spec §6, §7) plus a keep-alive ping. Every uplink is a CON request by
# default; ThingsBoard answers most of them with a separate CON response (spec §3),
# which coap.client matches by token and ACKs.
import asyncio
import time

from coap import message as m
from coap.client import Client, Route
from coap.errors import CoapError, NoAck
from tbdevice import errors

# Operations (shared with other links).
TELEMETRY = 0
ATTRIBUTES = 1
ATTRIBUTES_GET = 2
RPC_CALL = 3
RPC_REPLY = 4
CLAIM = 5
PROVISION = 6
_NAMES = ("telemetry", "attributes", "attribute request", "rpc", "rpc reply", "claim", "provision")

_ETIMEDOUT = 110

# Downlink kinds handed to the Downlink's queue.
ATTRIBUTE_UPDATE = 0
RPC_REQUEST = 1


class CoapLink:
    def __init__(self, host, port=5683, token=None, con=True, client=None, log=None, **coap):
        self.client = client or Client(host, port, **coap)
        self.con = con
        self.log = log
        self.token = None
        self._obs = []
        self._tasks = []
        self.pings = 0
        self.set_token(token)

    def _say(self, text):
        if self.log:
            self.log(text)

    def set_token(self, token):
        """token None: the token-less routes (api/v1/telemetry, ...) that ThingsBoard
        serves to a DTLS client whose certificate is a device's X.509 credentials
        (spec §2.2, §12); without such a session they get 4.01."""
        self.token = token
        base = "api/v1/" + token + "/" if token else "api/v1/"
        self._base = base
        attrs = Route(base + "attributes")
        # Indexed by operation; RPC_REPLY and PROVISION routes are made per call.
        self._routes = (Route(base + "telemetry"), attrs, attrs, Route(base + "rpc"), None, Route(base + "claim"))

    async def open(self):
        await self.client.connect()

    async def close(self):
        await self.stop_downlink()
        await self.client.close()

    def drop(self):
        """Forget the socket after a fault; open() makes a new one."""
        self.client.drop()

    @property
    def retransmissions(self):
        return self.client.retransmissions

    async def request(self, op, body=b"", query=None, timeout_ms=None, rid=None):
        """Send one operation; returns the answer's payload (None for an attribute
        request that found nothing). Error codes raise TbError subclasses."""
        if op == PROVISION:
            route = Route("api/v1/provision")
        elif op == RPC_REPLY:
            route = Route(self._base + "rpc/" + str(rid))
        else:
            route = self._routes[op]
        opts = ()
        if query:
            # One Uri-Query option per name=value (spec §6.1).
            opts = [(m.URI_QUERY, k + "=" + ",".join(v)) for k, v in query if v]
        code = m.GET if op == ATTRIBUTES_GET else m.POST
        try:
            msg = await self.client.request(code, route, body, opts, self.con, timeout_ms)
        except NoAck:
            if not self.client.transport.secure:
                raise
            # Over DTLS no ACK at all means the server no longer knows our session (restarted, or
            # its state expired, spec §12): a link fault, so the supervisor handshakes again.
            raise OSError(_ETIMEDOUT, "coaps: no ACK, the DTLS session is gone")
        c = msg.code
        if c >> 5 == 2:
            return msg.payload
        if op == ATTRIBUTES_GET and c == m.NOT_FOUND:
            return None  # 4.04 with no body means "none of them" over CoAP (spec §6.1)
        if op == PROVISION and msg.payload:
            return msg.payload  # 4.00 with a JSON status: the codec reads it (spec §9)
        if op == PROVISION:
            raise errors.ProvisionError("provision: %s with no status" % m.code_str(c), "BAD_REQUEST", c)
        raise errors.for_code(c, _NAMES[op])

    # ---- downlink ------------------------------------------------------------
    @property
    def subscribed(self):
        return len(self._obs) == 2 and self._obs[0].active and self._obs[1].active

    def start_downlink(self, put, silence_ms=300000, keepalive_ms=30000, ping_timeout_ms=10000, reopen=None):
        """Observe attributes and rpc, each with its own token (one token for both would
        cancel the first, spec §6.3); put(kind, payload, initial) queues what arrives.
        With keepalive_ms, a silent link is pinged; no answer calls reopen()."""
        if self._tasks:
            return
        from coap.observe import Observation

        def on_attr(msg, initial):
            if msg.code == m.CONTENT:
                put(ATTRIBUTE_UPDATE, msg.payload, initial)
            else:  # 2.02 Deleted (spec §6.4), 4.xx, 5.xx: the observation has ended
                self._say("attributes: subscription ended (%s), re-subscribing" % m.code_str(msg.code))

        def on_rpc(msg, initial):
            if msg.code == m.CONTENT and msg.payload:
                put(RPC_REQUEST, msg.payload, initial)
            elif msg.code != m.VALID and msg.code != m.CONTENT:
                self._say("rpc: subscription ended (%s), re-subscribing" % m.code_str(msg.code))
            # 2.03 Valid with no payload opens the RPC subscription (spec §7)

        cl = self.client
        self._obs = [
            Observation(cl, self._routes[ATTRIBUTES], on_attr, (), self.con, silence_ms),
            Observation(cl, self._routes[RPC_CALL], on_rpc, (), self.con, silence_ms),
        ]
        self._tasks = [asyncio.create_task(o.run()) for o in self._obs]
        if keepalive_ms:
            self._tasks.append(asyncio.create_task(self._keepalive(keepalive_ms, ping_timeout_ms, reopen)))

    async def stop_downlink(self):
        for t in self._tasks:
            t.cancel()
        self._tasks = []
        for o in self._obs:
            try:
                await o.cancel()
            except (CoapError, OSError) as e:
                self._say("unsubscribe: %r" % e)
        self._obs = []

    async def _keepalive(self, keepalive_ms, ping_timeout_ms, reopen):
        # No traffic for keepalive_ms: a CoAP ping (empty CON, RFC 7252 §4.3). No answer:
        # re-open the link; the observations see the new generation and re-register.
        cl = self.client
        while True:
            idle = time.ticks_diff(time.ticks_ms(), cl.last_rx)
            if idle < keepalive_ms:
                await asyncio.sleep_ms(keepalive_ms - idle)
                continue
            self.pings += 1
            try:
                alive = await cl.ping(ping_timeout_ms)
            except OSError:
                alive = False  # e.g. ECONNREFUSED (ICMP port unreachable) raised by the send itself
            if not alive:
                self._say("keepalive: no answer to a ping, re-opening the link")
                if reopen is not None:
                    await reopen()
            cl.last_rx = time.ticks_ms()
