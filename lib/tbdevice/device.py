# The ThingsBoard device API as one asyncio facade, independent of the transport (a link:
# CoAP today) and of the payload type (a codec: JSON today). Spec §5-§9, §14.
import asyncio
import random

from tbdevice import coaplink as op
from tbdevice.codec import JsonCodec

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


_TELEMETRY = const(0)  # coaplink.TELEMETRY, folded here
_ATTRIBUTES = const(1)  # coaplink.ATTRIBUTES


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
    then carries client timestamps. Transport faults (OSError) never reach the caller:
    the call waits while the link is re-opened with jittered back-off, then goes on.
    CoAP timeouts and the server's error codes do reach it (coap.errors.Timeout,
    tbdevice.errors.TbError, which keeps the code)."""

    def __init__(self, host, token, port=5683, con=True, clock=None, client=None, log=None, link=None, codec=None,
                 **coap):
        self.link = link or op.CoapLink(host, port, token, con, client, log, **coap)
        self.codec = codec or JsonCodec()
        self.link.codec = self.codec  # link.post() writes telemetry and attributes with it
        self.clock = clock
        self.log = log
        self.host = host
        self._lock = asyncio.Lock()
        self.reconnects = 0
        self._fails = 0
        self.downlink = None
        if token and link is not None:
            self.link.set_token(token)

    @property
    def client(self):
        """The CoAP client underneath (CoAP links only)."""
        return self.link.client

    @property
    def token(self):
        return self.link.token

    def set_token(self, token):
        self.link.set_token(token)

    # ---- link supervision (DESIGN §4.6) ----------------------------------------
    async def connect(self):
        """Open the link. A host name that does not resolve raises OSError here; every
        other fault is retried with back-off (logged when `log` is given)."""
        await self._reopen(first=True)

    async def close(self):
        if self.downlink is not None:
            await self.downlink.stop()
        await self.link.close()

    async def reconnect(self):
        """Re-open the link (a new socket; observations re-register)."""
        self.link.drop()
        await self._reopen()

    async def _reopen(self, first=False, wait=False):
        # One coroutine at a time re-opens the link; the others wait on the lock. After a
        # fault (wait=True) it first backs off, jittered and doubling up to 60 s, so a
        # server that refuses (ICMP unreachable) or a dead network is not hammered.
        async with self._lock:
            while True:
                if wait:
                    d = min(500 << min(self._fails, 7), 60000)
                    await asyncio.sleep_ms(d // 2 + random.getrandbits(16) % (d // 2 + 1))
                    self._fails += 1
                try:
                    await self.link.open()
                    if not first:
                        self.reconnects += 1
                    return
                except OSError as e:
                    if first and _unresolved(e):
                        # At connect() a name that does not resolve is most likely a wrong
                        # host: say so to the caller rather than retry forever in silence.
                        raise OSError("%s: the host name does not resolve (%s)" % (self.host, e))
                    if self.log:
                        self.log("link: %r, retrying" % e)
                wait = True

    async def request(self, operation, body=b"", query=None, timeout_ms=None, rid=None):
        """One operation of the device API (tbdevice.coaplink.TELEMETRY, ...); an OSError
        re-opens the link (after a back-off) and sends again."""
        while True:
            try:
                r = await self.link.request(operation, body, query, timeout_ms, rid)
                self._fails = 0
                return r
            except OSError as e:
                await self._fault(e)

    async def _fault(self, e):
        if self.log:
            self.log("link down: %r" % e)
        self.link.drop()
        await self._reopen(wait=True)

    def _post(self, operation, body, arg):
        # An uplink answered by a code only goes out at once (link.post; arg: ts, or the
        # RPC's id). When the answer came within the client's inline wait, which is usual,
        # the awaitable returned is already done: no coroutine, no allocation. Else the
        # rest is awaited in _rest, which also re-opens the link after a fault.
        r = self.link.post(operation, body, arg)
        if r is None:
            self._fails = 0
            return _DONE
        return self._rest(r, operation, body, arg)

    async def _rest(self, r, operation, body, arg):
        while True:
            if r is not None:
                try:
                    await r
                except OSError as e:
                    await self._fault(e)
                    r = self.link.post(operation, body, arg)
                    continue
            self._fails = 0
            return

    # ---- uplink ------------------------------------------------------------------
    # These send at the call and return an awaitable (await it): the server's errors and
    # CoAP timeouts surface when it is awaited; a value the codec cannot encode, at the call.
    def send_telemetry(self, values, ts=None):
        """values: {key: value}, {"ts", "values"} or a list of either. Without ts, the
        device clock (when set) stamps it."""
        if ts is None and self.clock is not None and not isinstance(values, list):
            ts = self.clock()
        r = self.link.post(_TELEMETRY, values, ts)  # _post(), inlined: the most frequent call
        if r is None:
            self._fails = 0
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
        timeout_ms raises coap.errors.Timeout (ThingsBoard then sends nothing at all)."""
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
        on: re-subscribed after an end, a silence, a reconnect) and the keep-alive ping.
        Returns at once."""
        self._down().start(silence_ms, keepalive_ms)


def _unresolved(e):
    # getaddrinfo's failure: the unix port raises OSError("[addrinfo error -2]"), lwIP ports
    # (Pico W, ESP32) and CPython's gaierror a negative number; socket errors are positive.
    a = e.args[0] if e.args else None
    return (type(a) is str and a.startswith("[addrinfo")) or (type(a) is int and a < 0)


def _keys(keys):
    if not keys:
        return ()
    return (keys,) if isinstance(keys, str) else keys
