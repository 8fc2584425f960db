# The ThingsBoard device API over CoAP (spec §2, §5-§9, §14) as one asyncio facade.
# Every uplink is a CON request by default; ThingsBoard answers most of them with a
# separate CON response (spec §3), which coap.client matches by token and ACKs.
import asyncio
import json
import random

from coap import message as m
from coap.client import Client, Route
from tbdevice import errors
from tbdevice.jsonenc import dumps


def _query(name, keys):
    # One Uri-Query option `name=a,b` per list (spec §6.1).
    if not keys:
        return ()
    if isinstance(keys, str):
        keys = (keys,)
    return (name + "=" + ",".join(keys),)


def decode_json(payload, what):
    try:
        return json.loads(payload)
    except ValueError:  # MicroPython raises ValueError; CPython's JSONDecodeError is one
        raise errors.BadPayload(what + ": the server's answer is not JSON")


def telemetry_body(values, ts=None):
    """The telemetry JSON object or array: values as given (server time), or
    {"ts", "values"} when a client timestamp in epoch milliseconds is known (spec §5)."""
    if ts is None or isinstance(values, list) or ("ts" in values and "values" in values):
        return values
    return {"ts": ts, "values": values}


class Device:
    """One device identified by its access token. `clock()` returns epoch milliseconds,
    or None while the clock is not set; telemetry then carries client timestamps.

    Transport faults (OSError) never reach the caller: the call waits while the link
    is re-opened with jittered back-off, then goes on. CoAP timeouts and the server's
    error codes do reach it (coap.errors.Timeout, tbdevice.errors.TbError)."""

    def __init__(self, host, token, port=5683, con=True, clock=None, client=None, log=None, **coap):
        self.client = client or Client(host, port, log=log, **coap)
        self.con = con
        self.clock = clock
        self.log = log
        self._link = asyncio.Lock()
        self.reconnects = 0
        self.set_token(token)
        self.downlink = None

    # ---- downlink: shared attributes and server-side RPC (spec §6, §7) -------
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
        """Start the attribute and RPC observations (kept registered from then on), the
        dispatcher and the keep-alive ping. Returns at once."""
        d = self._down()
        d.silence_ms = silence_ms
        d.keepalive_ms = keepalive_ms
        d.start()

    async def reconnect(self):
        """Re-open the link (a new socket; observations re-register)."""
        self.client.transport.close()
        await self._reopen()

    def set_token(self, token):
        self.token = token
        base = "api/v1/" + token + "/"
        self._telemetry = Route(base + "telemetry")
        self._attributes = Route(base + "attributes")
        self._rpc = Route(base + "rpc")
        self._claim = Route(base + "claim")

    async def connect(self):
        await self._reopen(first=True)

    async def close(self):
        if self.downlink is not None:
            await self.downlink.stop()
        await self.client.close()

    async def _reopen(self, first=False):
        # One coroutine at a time re-opens the link; others wait on the lock (DESIGN §4.6).
        async with self._link:
            delay = 500
            while True:
                try:
                    await self.client.connect()
                    return
                except OSError as e:
                    if self.log:
                        self.log("link: %r, retrying in %d ms" % (e, delay))
                if not first:
                    self.reconnects += 1
                await asyncio.sleep_ms(delay // 2 + random.getrandbits(16) % (delay // 2 + 1))
                delay = min(delay * 2, 60000)

    async def request(self, code, route, payload=b"", options=(), timeout_ms=None):
        """A raw request with link supervision: an OSError re-opens the link and retries."""
        while True:
            try:
                return await self.client.request(code, route, payload, options, self.con, timeout_ms)
            except OSError as e:
                if self.log:
                    self.log("link down: %r" % e)
                self.client.transport.close()
                await self._reopen()

    async def _post(self, route, body, what, timeout_ms=None):
        msg = await self.request(m.POST, route, body, (), timeout_ms)
        if msg.code >> 5 != 2:
            raise errors.for_code(msg.code, what)
        return msg

    # ---- uplink -------------------------------------------------------------
    async def send_telemetry(self, values, ts=None):
        """values: {key: value}, {"ts", "values"} or a list of either. Without ts, the
        device clock (when set) stamps it."""
        if ts is None and self.clock is not None and not isinstance(values, list):
            ts = self.clock()
        await self._post(self._telemetry, dumps(telemetry_body(values, ts)), "telemetry")

    async def send_attributes(self, attrs):
        await self._post(self._attributes, dumps(attrs), "attributes")

    async def request_attributes(self, client_keys=None, shared_keys=None):
        """{"client": {..}, "shared": {..}}; both sections always present. No keys at all
        asks for every attribute of both scopes (spec §6.1)."""
        q = _query("clientKeys", client_keys) + _query("sharedKeys", shared_keys)
        msg = await self.request(m.GET, self._attributes, b"", [(m.URI_QUERY, x) for x in q])
        out = {"client": {}, "shared": {}}
        if msg.code == m.NOT_FOUND:
            return out  # 4.04 with no body means "none of them" over CoAP (spec §6.1)
        if msg.code != m.CONTENT:
            raise errors.for_code(msg.code, "attribute request")
        got = decode_json(msg.payload, "attribute request")
        if not isinstance(got, dict):
            raise errors.BadPayload("attribute request: not a JSON object")
        out["client"] = got.get("client") or {}
        out["shared"] = got.get("shared") or {}
        return out

    async def call_rpc(self, method, params=None, timeout_ms=10000):
        """Client-side RPC (spec §8): the rule chain's reply, decoded. No reply within
        timeout_ms raises coap.errors.Timeout (ThingsBoard then sends nothing at all)."""
        body = dumps({"method": method, "params": params})
        msg = await self.request(m.POST, self._rpc, body, (), timeout_ms)
        if msg.code >> 5 != 2:
            raise errors.for_code(msg.code, "rpc " + method)
        return decode_json(msg.payload, "rpc " + method) if msg.payload else None

    async def claim(self, secret_key=None, duration_ms=None):
        """Claiming info (spec §14); with neither argument the body is empty (defaults)."""
        body = {}
        if secret_key is not None:
            body["secretKey"] = secret_key
        if duration_ms is not None:
            body["durationMs"] = duration_ms
        await self._post(self._claim, dumps(body) if body else b"", "claim")

    async def reply_rpc(self, request_id, result):
        """Reply to a server-side RPC: POST rpc/{id} with a JSON object (spec §7)."""
        r = Route("api/v1/" + self.token + "/rpc/" + str(request_id))
        await self._post(r, dumps(result), "rpc reply")
