# The ThingsBoard device API as one asyncio facade, independent of the transport (a link,
# tbdevice/link.py: CoAP or HTTP) and of the payload type (a codec: JSON or protobuf).
# Spec §5-§9, §14.
from tbdevice import link as op
from tbdevice.supervisor import Supervisor

try:
    from types import coroutine  # CPython: a generator is awaitable when marked so
except ImportError:

    def coroutine(f):
        return f


try:
    from micropython import const
except ImportError:

    def const(x):
        return x


_TELEMETRY = const(0)  # link.TELEMETRY, folded here
_ATTRIBUTES = const(1)  # link.ATTRIBUTES


@coroutine
def _finished():
    return
    yield  # noqa: a generator


# What an uplink answered at once returns: an exhausted generator, which `await` resumes
# as "return None" without raising or allocating (MicroPython, py/objgenerator.c).
_DONE = _finished()
for _ in _DONE:
    pass


class Device:
    """One device identified by its access token.

    `clock()` returns epoch milliseconds, or None while the clock is not set; telemetry
    then carries client timestamps. Link faults (OSError) never reach the caller: the call
    waits while the link is re-opened with jittered back-off (tbdevice.supervisor), then
    goes on. Timeouts and the server's error codes do reach it: tbdevice.errors.Timeout and
    the other tbdevice.errors.TbError classes, which keep the code; the same over every link."""

    def __init__(self, host, token, port=5683, con=True, clock=None, client=None, log=None, link=None, codec=None,
                 **coap):
        if link is None:
            from tbdevice.coaplink import CoapLink

            link = CoapLink(host, port, token, con, client, log, **coap)
        elif token:
            link.set_token(token)
        self.link = link
        if codec is None:
            from tbdevice.codec import JsonCodec

            codec = JsonCodec()
        self.codec = codec
        link.codec = codec  # link.post() writes telemetry and attributes with it
        self.clock = clock
        self.log = log
        self.supervisor = Supervisor(link, log)
        self.host = host
        self.downlink = None

    @property
    def client(self):
        """The CoAP client underneath (None over HTTP)."""
        return self.link.client

    @property
    def token(self):
        return self.link.token

    def set_token(self, token):
        self.link.set_token(token)

    @property
    def reconnects(self):
        """Times the link was opened again after a fault."""
        g = self.supervisor.generation
        return g - 1 if g else 0

    # ---- link supervision (DESIGN §4.6, tbdevice/supervisor.py) -------------------------
    async def connect(self):
        """Open the link. A host name that does not resolve raises OSError here; every
        other fault is retried with back-off (logged when `log` is given)."""
        try:
            await self.supervisor.open(first=True)
        except OSError as e:  # only an unresolvable name reaches here (Supervisor.open)
            raise OSError("%s: the host name does not resolve (%s)" % (self.host, e))

    def supervise(self, hal, keepalive_ms=30000):
        """Let the board's hooks take part in supervision (watchdog, network rejoin:
        tbdevice/supervisor.py) and probe the server after keepalive_ms of silence; starts
        the supervisor's task."""
        self.supervisor.start(hal, keepalive_ms)

    async def close(self):
        await self.supervisor.stop()
        if self.downlink is not None:
            await self.downlink.stop()
        await self.link.close()

    async def reconnect(self):
        """Re-open the link (a new socket; observations re-register)."""
        self.supervisor.down()
        await self.supervisor.link_up()

    async def request(self, operation, body=b"", query=None, timeout_ms=None, rid=None):
        """One operation of the device API (tbdevice.link.TELEMETRY, ...); a link fault
        re-opens the link (after a back-off) and sends again."""
        sup = self.supervisor
        while True:
            if not sup.up:
                await sup.link_up()
            try:
                r = await self.link.request(operation, body, query, timeout_ms, rid)
                sup.fails = 0
                return r
            except OSError as e:
                sup.fault(e)

    def _post(self, operation, body, arg):
        # An uplink answered by a code only goes out at once (link.post; arg: ts, or the
        # RPC's id). When the answer came within the client's inline wait, which is usual,
        # the awaitable returned is already done: no coroutine, no allocation. Else the
        # rest is awaited in _rest, which also re-opens the link after a fault.
        if not self.supervisor.up:
            return self._rest(None, operation, body, arg)
        r = self.link.post(operation, body, arg)
        if r is None:
            self.supervisor.fails = 0
            return _DONE
        return self._rest(r, operation, body, arg)

    async def _rest(self, r, operation, body, arg):
        sup = self.supervisor
        while True:
            if r is None:
                await sup.link_up()
                r = self.link.post(operation, body, arg)
            if r is not None:
                try:
                    await r
                except OSError as e:
                    sup.fault(e)
                    r = None
                    continue
            sup.fails = 0
            return

    # ---- uplink ------------------------------------------------------------------
    # These send at the call and return an awaitable (await it): the server's errors and
    # CoAP timeouts surface when it is awaited; a value the codec cannot encode, at the call.
    def send_telemetry(self, values, ts=None):
        """values: {key: value}, {"ts", "values"} or a list of either. Without ts, the
        device clock (when set) stamps it."""
        if ts is None and self.clock is not None and not isinstance(values, list):
            ts = self.clock()
        sup = self.supervisor
        if not sup.up:
            return self._rest(None, _TELEMETRY, values, ts)
        r = self.link.post(_TELEMETRY, values, ts)  # _post(), inlined: the most frequent call
        if r is None:
            sup.fails = 0
            return _DONE
        return self._rest(r, _TELEMETRY, values, ts)

    def send_attributes(self, attrs):
        """Client attributes {key: value}."""
        return self._post(_ATTRIBUTES, attrs, None)

    async def request_attributes(self, client_keys=None, shared_keys=None):
        """{"client": {..}, "shared": {..}}; both sections always present, empty when
        nothing was found. No keys at all asks for every attribute (spec §6.1)."""
        q = (("clientKeys", _keys(client_keys)), ("sharedKeys", _keys(shared_keys)))
        return self.codec.attribute_response(await self.request(op.ATTRIBUTES_GET, b"", q))

    async def call_rpc(self, method, params=None, timeout_ms=10000):
        """Client-side RPC (spec §8): the rule chain's reply, decoded. No reply within
        timeout_ms raises errors.Timeout (ThingsBoard then sends nothing at all)."""
        payload = await self.request(op.RPC_CALL, self.codec.rpc_call(method, params), None, timeout_ms)
        return self.codec.rpc_response(payload)

    def claim(self, secret_key=None, duration_ms=None):
        """Claiming info (spec §14); with neither argument the body is empty (defaults)."""
        return self._post(op.CLAIM, self.codec.claim(secret_key, duration_ms), None)

    def reply_rpc(self, request_id, result):
        """Reply to a server-side RPC: rpc/{id} with a JSON object (spec §7)."""
        return self._post(op.RPC_REPLY, self.codec.rpc_reply(result), request_id)

    # ---- downlink: shared attributes and server-side RPC (spec §6, §7) -------------
    def _down(self):
        if self.downlink is None:
            from tbdevice.downlink import Downlink

            self.downlink = Downlink(self)
        return self.downlink

    def on_attribute(self, key, cb):
        """cb(value) when the shared attribute changes (None when deleted)."""
        self._down().attributes.on(key, cb)

    def on_attributes(self, cb):
        """cb(changed: dict, deleted: list) after every shared-attribute change."""
        self._down().attributes.on_any(cb)

    def on_rpc(self, method, fn):
        """fn(params) -> result, plain or async; its result is the RPC's reply."""
        self._down().rpc.on(method, fn)

    @property
    def shared(self):
        """The device's copy of its shared attributes (a dict)."""
        return self._down().attributes.values

    def subscribe(self, silence_ms=300000, keepalive_ms=30000):
        """Start receiving shared-attribute updates and RPCs (kept subscribed from then
        on by the supervisor: re-subscribed after an end, a silence, a reconnect) and the
        keep-alive ping after keepalive_ms without a datagram (0: none). Returns at once."""
        self._down().start(silence_ms)
        self.supervisor.start(keepalive_ms=keepalive_ms, downlink=True)


def _keys(keys):
    if not keys:
        return ()
    return (keys,) if isinstance(keys, str) else keys
