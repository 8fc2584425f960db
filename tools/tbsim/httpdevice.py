"""ThingsBoard's HTTP device API, /api/v1/{token}/... on the REST port (spec §15, DeviceApiController)."""

import asyncio

from aiohttp import web

from . import jsontypes
from .core import CLIENT_SCOPE, SHARED_SCOPE, flat_json
from .provision import BadRequest, provision
from .rpc import client_rpc
from .store import now_ms


def _keys(request, name):
    raw = request.query.get(name)
    if not raw:
        return None
    items = raw.split(",")
    while items and items[-1] == "":
        items.pop()
    return items


class HttpDeviceApi:
    def __init__(self, store, core, rpc, log, ota, request_timeout_ms=60000):
        self.store = store
        self.ota = ota
        self.core = core
        self.rpc = rpc
        self.log = log
        self.request_timeout_ms = request_timeout_ms  # transport.http.request_timeout

    def add_routes(self, router):
        router.add_post("/api/v1/provision", self.provision)
        router.add_post("/api/v1/{token}/telemetry", self.telemetry)
        router.add_post("/api/v1/{token}/attributes", self.post_attributes)
        router.add_get("/api/v1/{token}/attributes", self.get_attributes)
        router.add_get("/api/v1/{token}/attributes/updates", self.attribute_updates)
        router.add_get("/api/v1/{token}/rpc", self.rpc_poll)
        router.add_post("/api/v1/{token}/rpc/{rid}", self.rpc_reply)
        router.add_post("/api/v1/{token}/rpc", self.client_rpc)
        router.add_post("/api/v1/{token}/claim", self.claim)
        router.add_get("/api/v1/{token}/firmware", self.download)
        router.add_get("/api/v1/{token}/software", self.download)

    def _log(self, request, route, device, body, status):
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.log.line("http %s %s %s %s%s -> %s" % (
            "%s:%d" % peer[:2] if peer else "-", request.method, route, device["name"] if device else "-",
            (" " + jsontypes.dumps(body.decode("utf-8", "replace"))[1:-1][:120]) if body else "", status))

    async def _device(self, request, route):
        device = self.store.device_by_token(request.match_info["token"])
        if device is None:
            self._log(request, route, None, await request.read(), 401)
            raise web.HTTPUnauthorized(text="")  # bad token: 401 with an empty body
        return device

    def _timeout(self, request):
        try:
            ms = int(request.query.get("timeout", "0"))
        except ValueError:
            ms = 0
        return (ms if ms > 0 else self.request_timeout_ms) / 1000.0

    async def telemetry(self, request):
        device = await self._device(request, "telemetry")
        body = await request.read()
        try:
            entries = jsontypes.parse_telemetry(body, now_ms())
        except jsontypes.BadPayload as exc:
            self._log(request, "telemetry", device, body, 500)
            return web.Response(status=500, text=str(exc))  # Gson error reaches onError (spec §15)
        self.store.save_telemetry(device["id"], entries)
        self._log(request, "telemetry", device, body, 200)
        return web.Response(status=200)

    async def post_attributes(self, request):
        device = await self._device(request, "attributes")
        body = await request.read()
        try:
            kvs = jsontypes.parse_attributes(body)
        except jsontypes.BadPayload as exc:
            self._log(request, "attributes", device, body, 500)
            return web.Response(status=500, text=str(exc))
        self.core.save_attributes(device["id"], CLIENT_SCOPE, kvs)
        self._log(request, "attributes", device, body, 200)
        return web.Response(status=200)

    async def get_attributes(self, request):
        device = await self._device(request, "attributes")
        ck, sk = _keys(request, "clientKeys"), _keys(request, "sharedKeys")
        did = device["id"]
        if ck is None and sk is None:
            client, shared = self.store.attributes(did, CLIENT_SCOPE), self.store.attributes(did, SHARED_SCOPE)
        else:
            client = self.store.attributes(did, CLIENT_SCOPE, ck) if ck else []
            shared = self.store.attributes(did, SHARED_SCOPE, sk) if sk else []
        parts = (['"client":' + flat_json(client)] if client else []) + (
            ['"shared":' + flat_json(shared)] if shared else [])
        text = "{" + ",".join(parts) + "}"  # {} when nothing is found (spec §6.1, HTTP)
        self._log(request, "attributes?" + request.query_string, device, b"", "200 " + text[:100])
        return web.Response(text=text, content_type="application/json")

    async def _long_poll(self, request, waiters_by_device, device):
        """Wait for what the server pushes to this device: the value, or None when the poll's
        `timeout` ran out (the caller answers 408, spec §15)."""
        fut = asyncio.get_running_loop().create_future()
        waiters_by_device.setdefault(device["id"], []).append(fut)
        try:
            return await asyncio.wait_for(fut, self._timeout(request))
        except asyncio.TimeoutError:
            return None
        finally:
            waiters = waiters_by_device.get(device["id"], [])
            if fut in waiters:
                waiters.remove(fut)

    async def attribute_updates(self, request):
        device = await self._device(request, "attributes/updates")
        payload = await self._long_poll(request, self.core.http_waiters, device)
        if payload is None:
            self._log(request, "attributes/updates", device, b"", 408)
            return web.Response(status=408)
        self._log(request, "attributes/updates", device, b"", "200 " + payload.decode()[:100])
        return web.Response(body=payload, content_type="application/json")

    async def rpc_poll(self, request):
        device = await self._device(request, "rpc")
        rec = self.rpc.http_poll_now(device["id"])
        if rec is None:
            rec = await self._long_poll(request, self.rpc.http_waiters, device)
            if rec is None:
                self._log(request, "rpc", device, b"", 408)
                return web.Response(status=408)
        self.rpc.http_delivered(rec)
        params = jsontypes.to_python(jsontypes.JSON, rec["params"])
        text = jsontypes.dumps({"id": rec["seq"], "method": rec["method"], "params": params})
        self._log(request, "rpc", device, b"", "200 " + text[:100])
        return web.Response(text=text, content_type="application/json")

    async def rpc_reply(self, request):
        device = await self._device(request, "rpc/" + request.match_info["rid"])
        body = await request.read()
        try:
            rid = int(request.match_info["rid"])
        except ValueError:
            return web.Response(status=400)
        self.rpc.reply(device["id"], rid, body.decode("utf-8", "replace"))  # passed through, not validated
        self._log(request, "rpc/%d" % rid, device, body, 200)
        return web.Response(status=200)

    async def client_rpc(self, request):
        device = await self._device(request, "rpc")
        body = await request.read()
        try:
            obj = jsontypes.loads(body)
        except jsontypes.BadPayload as exc:
            return web.Response(status=500, text=str(exc))
        if not isinstance(obj, dict) or not isinstance(obj.get("method"), str) or "params" not in obj:
            self._log(request, "rpc", device, body, 500)
            return web.Response(status=500)  # params is required over HTTP (spec §15)
        answer = client_rpc(obj["method"], obj["params"])
        if answer is None:
            await asyncio.sleep(self.request_timeout_ms / 1000.0)
            self._log(request, "rpc", device, body, 408)
            return web.Response(status=408)
        delay, text = answer
        if delay:
            await asyncio.sleep(delay)
        self._log(request, "rpc", device, body, "200 " + text[:100])
        return web.Response(text=text, content_type="application/json")

    async def claim(self, request):
        device = await self._device(request, "claim")
        body = await request.read()
        secret, duration = "", 0
        if body.strip():
            try:
                obj = jsontypes.loads(body)
            except jsontypes.BadPayload:
                return web.Response(status=500)
            if isinstance(obj, dict):
                secret = str(obj.get("secretKey") or "")
                try:
                    duration = int(str(obj.get("durationMs") or 0))
                except ValueError:
                    return web.Response(status=500)
        self.store.save_claim(device["id"], secret, duration if duration > 0 else 86400000)
        self._log(request, "claim", device, body, 200)
        return web.Response(status=200)

    async def provision(self, request):
        body = await request.read()
        try:
            ok, resp = provision(self.store, body)
        except BadRequest:
            self._log(request, "provision", None, body, 500)
            return web.Response(status=500)
        text = jsontypes.dumps(resp)
        self._log(request, "provision", None, body, "200 " + text)
        return web.Response(text=text, content_type="application/json")  # always 200 (spec §9)

    async def download(self, request):
        kind = request.path.rsplit("/", 1)[1]
        device = await self._device(request, kind)
        if "title" not in request.query or "version" not in request.query:
            return web.Response(status=400)  # both are required over HTTP (spec §10.3)
        status, data = self.ota.select(device, "FIRMWARE" if kind == "firmware" else "SOFTWARE", request.query)
        code = {"ok": 200, "none": 404, "mismatch": 400, "bad": 500}[status]
        self._log(request, kind + "?" + request.query_string, device, b"", "%d %s" % (
            code, "<%d bytes>" % len(data) if data is not None else ""))
        if status != "ok":
            return web.Response(status=code)
        return web.Response(body=data, content_type="application/octet-stream")
