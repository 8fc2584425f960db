# The ThingsBoard device API's routes over CoAP (spec §2): which method and path each
# operation takes, which codes mean success, and the downlink as two RFC 7641 observations
# (spec §6, §7; tbdevice/coapdown.py, loaded with Device.subscribe()). Every uplink is a CON
# request by default; ThingsBoard answers most of them with a separate CON response (spec §3),
# which coap.client matches by token and ACKs.
# What a link offers is tbdevice/link.py; the Supervisor keeps this one open and registered.
import asyncio

try:
    from micropython import const
except ImportError:  # CPython (type checks)

    def const(x):
        return x


from coap import message as m
from coap.client import Client, Route
from coap.errors import BadResponse, CoapError, FormatError, NoAck
from tbdevice import errors
from tbdevice.link import ATTRIBUTES_GET, NAMES, PROVISION, RPC_REPLY, encoded

_ETIMEDOUT = const(110)
_CON_POST = const(0x4002)  # coap.client.header(True, POST)
_NON_POST = const(0x5002)
# link.TELEMETRY, ATTRIBUTES and RPC_REPLY, folded here for post(), the per-message path (an
# imported name is a global lookup per use).
_TELEMETRY = const(0)
_ATTRIBUTES = const(1)
_RPC_REPLY = const(4)


async def _raise(e):
    raise e


def neutral(e, secure=False):
    """A CoAP fault as the application sees it (tbdevice.errors, whatever the link): no
    answer (or an RST) is errors.Timeout, an answer it cannot use errors.BadPayload. Over
    DTLS no ACK at all means the server no longer knows our session (restarted, or its state
    expired, spec §12): a link fault (OSError), so the supervisor handshakes again."""
    if isinstance(e, NoAck) and secure:
        return OSError(_ETIMEDOUT, "coaps: no ACK, the DTLS session is gone")
    if isinstance(e, (BadResponse, FormatError)):
        return errors.BadPayload(str(e))
    if isinstance(e, CoapError):
        return errors.Timeout(str(e))
    return e


class CoapLink:
    basic = False  # access token or X.509 only (tbdevice/link.py)

    def __init__(self, host, port=5683, token=None, con=True, client=None, log=None, **coap):
        self.client = client or Client(host, port, **coap)
        self.host, self.port = host, port  # for messages (tbdevice/link.py)
        self.con = con
        self.codec = None  # set by the Device: what post() writes telemetry and attributes with
        self.log = log
        self.token = None
        self.ended = None  # set by the Supervisor: called when the server ends a subscription
        self._down = None  # tbdevice.coapdown.Observations, from start_downlink() on
        self.set_token(token)

    def say(self, text):
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
        # Indexed by operation (coapdown reads the downlink's); RPC_REPLY and PROVISION routes are made per call.
        self.routes = (Route(base + "telemetry"), attrs, attrs, Route(base + "rpc"), None, Route(base + "claim"))

    async def open(self):
        await self.client.connect()

    async def close(self):
        await self.stop_downlink()
        await self.client.close()

    def drop(self):
        """Forget the socket after a fault; open() makes a new one."""
        self.client.drop()

    def pause(self):
        self.client.stop_rx()

    def resume(self):
        self.client.start_rx()

    def heard(self):
        return self.client.last_rx

    async def probe(self, timeout_ms):
        """A CoAP ping (RFC 7252 §4.3), bounded even while a request holds the send slot."""
        try:
            return await asyncio.wait_for_ms(self.client.ping(timeout_ms), timeout_ms + 1000)
        except asyncio.TimeoutError:
            return False

    @property
    def retransmissions(self):
        return self.client.retransmissions

    def stats(self):
        cl = self.client
        return {"retransmissions": cl.retransmissions, "received": cl.received, "rejected": cl.rejected,
                "rx_no_heap": cl.nomem}

    def _rpc_route(self, rid):
        return Route(self._base + "rpc/" + str(rid))

    def _route(self, op, rid):
        if op == RPC_REPLY:
            return self._rpc_route(rid)
        if op == PROVISION:
            return Route("api/v1/provision")
        return self.routes[op]

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
        cl.stage(self.routes[op] if op != _RPC_REPLY else self._rpc_route(arg))
        if op == _TELEMETRY:
            self.codec.write_telemetry(cl.body, body, arg)
        elif op == _ATTRIBUTES:
            self.codec.write_attributes(cl.body, body)
        elif body:
            cl.body.write(body)
        ex = cl.send(_CON_POST if self.con else _NON_POST)
        if ex is None:
            return self._big(op, arg)
        if ex.err is None:
            if ex.code >> 5 == 2:  # answered with success, the usual case
                cl.end(ex)
                return None
            if ex.code == 0:  # no answer yet
                return self._rest(ex, op)
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
        except CoapError as e:
            cl.end(ex)
            raise neutral(e, cl.transport.secure)
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
        return _raise(neutral(e, self.client.transport.secure) if e is not None else errors.for_code(c, NAMES[op]))

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
        except CoapError as e:
            raise neutral(e, self.client.transport.secure)
        c = msg.code
        if c >> 5 == 2:
            return msg.payload
        if op == ATTRIBUTES_GET and c == m.NOT_FOUND:
            return None  # 4.04 with no body means "none of them" over CoAP (spec §6.1)
        if op == PROVISION and msg.payload:
            return msg.payload  # 4.00 with a JSON status: the codec reads it (spec §9)
        if op == PROVISION:
            raise errors.ProvisionError("provision: %s with no status" % m.code_str(c), "BAD_REQUEST", c)
        raise errors.for_code(c, NAMES[op])

    def download(self, kind, pkg, offset, data, mode="chunk", chunk_size=1024, path="fw", timeout_ms=None):
        """An OTA package (spec §10.2) from byte `offset` on: chunks of chunk_size from
        fw/{token} (path "api": api/v1/{token}/firmware), or Block2 (tbdevice/coapota.py,
        loaded only for a download)."""
        from tbdevice.coapota import download

        return download(self, kind, pkg, offset, data, mode, chunk_size, path, timeout_ms)

    # ---- downlink (tbdevice/coapdown.py, loaded with subscribe()) ---------------------------
    @property
    def subscribed(self):
        d = self._down
        return d is not None and d.subscribed()

    def start_downlink(self, put, silence_ms=300000):
        """Observe attributes and rpc; put(kind, payload, initial) queues what arrives. The
        Supervisor registers them (keep_downlink)."""
        if self._down is None:
            from tbdevice.coapdown import Observations

            self._down = Observations(self, put, silence_ms)

    def keep_downlink(self, renew=False):
        """None when both observations stand; else the coroutine registering those that do
        not (tbdevice/coapdown.py)."""
        d = self._down
        return None if d is None else d.keep(renew)

    async def stop_downlink(self):
        d, self._down = self._down, None
        if d is not None:
            await d.stop()
