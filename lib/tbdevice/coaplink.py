# The ThingsBoard device API's routes over CoAP (spec §2): which method and path each
# operation takes, which codes mean success, and the downlink as two RFC 7641
# observations (spec §6, §7) plus a keep-alive ping. Every uplink is a CON request by
# default; ThingsBoard answers most of them with a separate CON response (spec §3),
# which coap.client matches by token and ACKs.
import asyncio
import time

try:
    from micropython import const
except ImportError:  # CPython (type checks)

    def const(x):
        return x


from coap import message as m
from coap.client import Client, Route
from coap.errors import CoapError, NoAck
from tbdevice import errors

# Operations (shared with other links).
TELEMETRY = const(0)
ATTRIBUTES = const(1)
ATTRIBUTES_GET = const(2)
RPC_CALL = const(3)
RPC_REPLY = const(4)
CLAIM = const(5)
PROVISION = const(6)
_NAMES = ("telemetry", "attributes", "attribute request", "rpc", "rpc reply", "claim", "provision")

_ETIMEDOUT = 110
_CON_POST = const(0x4002)  # coap.client.header(True, POST)
_NON_POST = const(0x5002)

# Downlink kinds handed to the Downlink's queue.
ATTRIBUTE_UPDATE = 0
RPC_REQUEST = 1


async def _raise(e):
    raise e


def encoded(codec, op, body, arg):
    """The payload of an uplink for post(): telemetry and attributes hold values the codec
    encodes (arg: the telemetry's ts); the others are the payload already."""
    if op == TELEMETRY:
        return codec.telemetry(body, arg)
    if op == ATTRIBUTES:
        return codec.attributes(body)
    return body


class CoapLink:
    def __init__(self, host, port=5683, token=None, con=True, client=None, log=None, **coap):
        self.client = client or Client(host, port, **coap)
        self.con = con
        self.codec = None  # set by the Device: what post() writes telemetry and attributes with
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

    def _rpc_route(self, rid):
        return Route(self._base + "rpc/" + str(rid))

    def _route(self, op, rid):
        if op == RPC_REPLY:
            return self._rpc_route(rid)
        if op == PROVISION:
            return Route("api/v1/provision")
        return self._routes[op]

    def post(self, op, body, arg=None):
        """An uplink answered by a code only (telemetry, attributes, RPC reply, claim),
        without a coroutine: the body (bytes or str; for telemetry and attributes the
        values, which self.codec writes) goes straight into the client's send buffer;
        arg is the telemetry's ts or the RPC reply's id. None once answered with success;
        otherwise an awaitable: the rest (no answer within the client's inline wait, every
        send slot busy, a body above one block), or an error the await raises."""
        cl = self.client
        if not cl.slots:  # every send slot busy
            return self._slow(op, body, arg)
        cl.stage(self._routes[op] if op != RPC_REPLY else self._rpc_route(arg))
        if op == TELEMETRY:
            self.codec.write_telemetry(cl.body, body, arg)
        elif op == ATTRIBUTES:
            self.codec.write_attributes(cl.body, body)
        elif body:
            cl.body.write(body)
        ex = cl.send(_CON_POST if self.con else _NON_POST)
        if ex is None:
            return self._big(op, arg)
        if ex.code == 0 and ex.err is None:  # no answer yet
            return self._rest(ex, op)
        if ex.err is None and ex.code >> 5 == 2:
            cl.end(ex)
            return None
        return self._result(ex, op)

    def _slow(self, op, body, arg):
        return self.request(op, encoded(self.codec, op, body, arg), None, None, arg)

    def _big(self, op, arg):
        # Above one block: Block1 (RFC 7959), through request().
        return self.request(op, self.client.payload(), None, None, arg)

    async def _rest(self, ex, op):
        cl = self.client
        try:
            await cl.wait(ex)
        except NoAck as e:
            cl.end(ex)
            self._no_ack(e)
        except BaseException:  # CancelledError too: the send slot is freed
            cl.end(ex)
            raise
        r = self._result(ex, op)
        if r is not None:
            await r

    def _result(self, ex, op):
        # Ends ex; None for success, else an awaitable raising the error.
        c = ex.code
        e = ex.err
        self.client.end(ex)
        if e is None and c >> 5 == 2:
            return None
        return _raise(e if e is not None else errors.for_code(c, _NAMES[op]))

    def _no_ack(self, e):
        if self.client.transport.secure:
            # Over DTLS no ACK at all means the server no longer knows our session (restarted, or
            # its state expired, spec §12): a link fault, so the supervisor handshakes again.
            raise OSError(_ETIMEDOUT, "coaps: no ACK, the DTLS session is gone")
        raise e

    async def request(self, op, body=b"", query=None, timeout_ms=None, rid=None):
        """Send one operation; returns the answer's payload (None for an attribute
        request that found nothing). Error codes raise TbError subclasses."""
        route = self._route(op, rid)
        opts = ()
        if query:
            # One Uri-Query option per name=value (spec §6.1).
            opts = [(m.URI_QUERY, k + "=" + ",".join(v)) for k, v in query if v]
        code = m.GET if op == ATTRIBUTES_GET else m.POST
        try:
            msg = await self.client.request(code, route, body, opts, self.con, timeout_ms)
        except NoAck as e:
            self._no_ack(e)
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
