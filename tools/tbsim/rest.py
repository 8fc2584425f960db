"""A subset of ThingsBoard's REST API with ThingsBoard's own paths and shapes, so that scripts written
against tbsim run unchanged against a real server (TB_URL + credentials)."""

import json
import math
import secrets

from aiohttp import web

from . import jsontypes, protomode
from .core import SCOPES, SERVER_SCOPE, SHARED_SCOPE
from .power import BadConfiguration, device_transport, profile_transport
from .provision import ALLOW_CREATE
from .rest_ota import OtaRest
from .store import Conflict, now_ms

_TENANT = "2bd5b8f0-0000-4000-8000-000000000001"
_NULL_CUSTOMER = "13814000-1dd2-11b2-8080-808080808080"  # ThingsBoard's NULL_UUID customer


def _ref(kind, uid):
    return {"entityType": kind, "id": uid}


def _error(status, message, code=None):
    body = {"status": status, "message": message, "errorCode": code if code is not None else {
        400: 31, 401: 10, 403: 20, 404: 32}.get(status, 2), "timestamp": now_ms()}
    return web.json_response(body, status=status)


def device_json(d, store=None):
    ota = {}
    for field, ptype in (("firmwareId", "FIRMWARE"), ("softwareId", "SOFTWARE")):
        p = store.assigned_ota(d["id"], ptype) if store is not None else None
        ota[field] = _ref("OTA_PACKAGE", p["id"]) if p else None
    return {"id": _ref("DEVICE", d["id"]), "createdTime": d["created_time"], "tenantId": _ref("TENANT", _TENANT),
            "customerId": _ref("CUSTOMER", _NULL_CUSTOMER), "name": d["name"], "type": d["type"], "label": None,
            "deviceProfileId": _ref("DEVICE_PROFILE", d["profile_id"]), "firmwareId": ota["firmwareId"],
            "softwareId": ota["softwareId"],
            "additionalInfo": None, "deviceData": {"configuration": {"type": "DEFAULT"},
                                                   "transportConfiguration": _transport(d)}}


def _transport(row):
    return json.loads(row["transport_config"]) if row.get("transport_config") else {"type": "DEFAULT"}


def _set_transport(store, table, eid, data):
    """profileData / deviceData: its transportConfiguration (COAP power saving, spec §13), when given."""
    if not isinstance(data, dict) or "transportConfiguration" not in data:
        return
    parse = profile_transport if table == "profiles" else device_transport
    try:
        cfg = parse(data["transportConfiguration"])
        if table == "profiles":
            protomode.validate(cfg)  # a PROTOBUF profile's schemas must compile (spec §11)
    except (BadConfiguration, AttributeError, protomode.SchemaError) as exc:
        raise web.HTTPBadRequest(reason="Invalid transport configuration: %s" % exc)
    store.set_transport_config(table, eid, json.dumps(cfg) if cfg else None)


def profile_json(p):
    prov = {"type": p["provision_type"], "provisionDeviceSecret": p["provision_secret"]}
    return {"id": _ref("DEVICE_PROFILE", p["id"]), "createdTime": p["created_time"],
            "tenantId": _ref("TENANT", _TENANT), "name": p["name"], "default": bool(p["is_default"]),
            "type": "DEFAULT", "transportType": p["transport_type"], "provisionType": p["provision_type"],
            "provisionDeviceKey": p["provision_key"],
            "profileData": {"configuration": {"type": "DEFAULT"}, "transportConfiguration": _transport(p),
                            "provisionConfiguration": prov, "alarms": None}}


def _page(items, request):
    try:
        size = int(request.query.get("pageSize", "100"))
        page = int(request.query.get("page", "0"))
    except ValueError:
        raise web.HTTPBadRequest()
    size = max(size, 1)
    total = len(items)
    chunk = items[page * size:(page + 1) * size]
    pages = math.ceil(total / size) if total else 0
    return {"data": chunk, "totalPages": pages, "totalElements": total, "hasNext": (page + 1) * size < total}


def _keys(request):
    raw = request.query.get("keys")
    if raw is None or raw == "":
        return None
    return [k.strip() for k in raw.split(",") if k.strip()]



def _check_assignable(ptype, package, profile_id):
    """ThingsBoard's checks before a device takes a package (AbstractHasOtaPackageValidator), in its
    order and words: the package must exist, be of the field's type, hold data or a URL, and belong
    to the device's profile."""
    kind = ptype.lower()
    if package is None:
        raise web.HTTPBadRequest(reason="Can't assign non-existent %s!" % kind)
    if package["type"] != ptype:
        raise web.HTTPBadRequest(reason="Can't assign %s with type: %s" % (kind, package["type"]))
    if package["data"] is None and not package["url"]:
        raise web.HTTPBadRequest(reason="Can't assign %s with empty data!" % kind)
    if package["profile_id"] is None:  # equals() on the package's null profile: an internal error there
        raise web.HTTPInternalServerError(reason="Cannot invoke \"DeviceProfileId.equals(Object)\" because the "
                                          "package's deviceProfileId is null")
    if package["profile_id"] != profile_id:
        raise web.HTTPBadRequest(reason="Can't assign %s with different deviceProfile!" % kind)


def _credentials_json(d):
    return {"id": _ref("DEVICE_CREDENTIALS", d["id"]), "createdTime": d["created_time"],
            "deviceId": _ref("DEVICE", d["id"]), "credentialsType": d["cred_type"],
            "credentialsId": d["cred_id"], "credentialsValue": d["cred_value"]}

class RestApi:
    def __init__(self, store, core, rpc, log, username="tenant@thingsboard.org", password="tenant",
                 rpc_min_timeout_ms=5000, device_api=None, ota=None):
        self.store = store
        self.core = core
        self.rpc = rpc
        self.log = log
        self.users = {username: password}
        self.tokens = set()
        self.rpc_min_timeout_ms = rpc_min_timeout_ms
        self.ota = ota
        self.app = web.Application(middlewares=[self._auth])
        r = self.app.router
        if device_api is not None:
            device_api.add_routes(r)  # the HTTP device API shares the port, as in the monolith
        r.add_post("/api/auth/login", self.login)
        r.add_post("/api/device", self.create_device)
        r.add_get("/api/device/{id}", self.get_device)
        r.add_delete("/api/device/{id}", self.delete_device)
        r.add_get("/api/device/{id}/credentials", self.get_credentials)
        r.add_post("/api/device/credentials", self.save_credentials)
        r.add_get("/api/tenant/devices", self.tenant_devices)
        r.add_post("/api/deviceProfile", self.create_profile)
        r.add_get("/api/deviceProfile/{id}", self.get_profile)
        r.add_get("/api/deviceProfiles", self.list_profiles)
        t = "/api/plugins/telemetry/DEVICE/{id}"
        r.add_get(t + "/values/timeseries", self.get_timeseries)
        r.add_get(t + "/keys/timeseries", self.ts_keys)
        r.add_get(t + "/keys/attributes", self.attr_keys)
        r.add_get(t + "/values/attributes", self.get_attributes)
        r.add_get(t + "/values/attributes/{scope}", self.get_attributes)
        r.add_post(t + "/attributes/{scope}", self.save_attributes)
        r.add_post(t + "/timeseries/{scope}", self.save_timeseries)
        r.add_post(t + "/{scope}", self.save_attributes)
        r.add_delete(t + "/{scope}", self.delete_attributes)
        r.add_delete(t + "/attributes/{scope}", self.delete_attributes)
        r.add_post("/api/plugins/rpc/{kind:oneway|twoway}/{id}", self.rpc_call)
        r.add_get("/api/rpc/persistent/{id}", self.get_rpc)
        r.add_post("/api/customer/device/{name}/claim", self.claim)
        OtaRest(store, log, _page).add_routes(r)

    @web.middleware
    async def _auth(self, request, handler):
        if request.path.startswith("/api/v1/"):
            return await handler(request)  # the device API: its own token in the path, its own error bodies
        if request.path != "/api/auth/login":
            header = request.headers.get("X-Authorization", "")
            if not header.startswith("Bearer ") or header[7:] not in self.tokens:
                return _error(401, "Authentication failed", 10)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _error(exc.status, exc.reason)
            raise

    async def _json(self, request):
        try:
            return json.loads(await request.text())
        except ValueError:
            raise web.HTTPBadRequest(reason="Invalid request body")

    def _device(self, request):
        d = self.store.device(request.match_info["id"])
        if d is None:
            raise web.HTTPNotFound(reason="Requested item wasn't found!")
        return d

    async def login(self, request):
        body = await self._json(request)
        if not isinstance(body, dict) or self.users.get(body.get("username")) != body.get("password"):
            return _error(401, "Invalid username or password", 10)
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        return web.json_response({"token": token, "refreshToken": secrets.token_urlsafe(32)})

    # ---- devices
    async def create_device(self, request):
        body = await self._json(request)
        if not isinstance(body, dict) or not body.get("name"):
            raise web.HTTPBadRequest(reason="Device name should be specified!")
        if isinstance(body.get("id"), dict) and body["id"].get("id"):
            return self._update_device(body)
        profile = None
        if isinstance(body.get("deviceProfileId"), dict):
            profile = self.store.profile(body["deviceProfileId"].get("id"))
            if profile is None:
                raise web.HTTPBadRequest(reason="Device profile is referencing a non-existent device profile!")
        elif body.get("type"):
            profile = self.store.profile_by_name(body["type"]) or self.store.add_profile(body["type"])
        try:
            d = self.store.add_device(body["name"], token=request.query.get("accessToken"),
                                      profile_id=profile["id"] if profile else None)
        except Conflict:
            raise web.HTTPBadRequest(reason="Device with such name already exists!")
        _set_transport(self.store, "devices", d["id"], body.get("deviceData"))
        d = self.store.device(d["id"])
        self.log.rest("POST", "/api/device", 200, "created %s" % d["name"])
        return web.json_response(device_json(d, self.store))

    def _update_device(self, body):
        """POST /api/device with an id: ThingsBoard's update; firmwareId/softwareId assign OTA packages."""
        d = self.store.device(body["id"]["id"])
        if d is None:
            raise web.HTTPNotFound(reason="Requested item wasn't found!")
        _set_transport(self.store, "devices", d["id"], body.get("deviceData"))
        d = self.store.device(d["id"])
        for field, ptype in (("firmwareId", "FIRMWARE"), ("softwareId", "SOFTWARE")):
            if field not in body:
                continue
            ref = body[field]
            package = self.store.ota_package(ref.get("id")) if isinstance(ref, dict) else None
            if isinstance(ref, dict):
                _check_assignable(ptype, package, d["profile_id"])
            current = self.store.assigned_ota(d["id"], ptype)
            if (current["id"] if current else None) != (package["id"] if package else None):
                self.ota.assign(d["id"], ptype, package)
                self.log.rest("POST", "/api/device", 200, "%s %s -> %s" % (
                    d["name"], field, "%s %s" % (package["title"], package["version"]) if package else "none"))
        return web.json_response(device_json(d, self.store))

    async def get_device(self, request):
        return web.json_response(device_json(self._device(request)))

    async def delete_device(self, request):
        d = self._device(request)
        self.core.delete_device(d["id"])
        self.log.rest("DELETE", "/api/device/" + d["id"], 200, "deleted %s" % d["name"])
        return web.Response(status=200)

    async def get_credentials(self, request):
        return web.json_response(_credentials_json(self._device(request)))

    async def save_credentials(self, request):
        """ThingsBoard's POST /api/device/credentials: ACCESS_TOKEN (credentialsId is the token),
        X509_CERTIFICATE (credentialsValue is the PEM; its id is the SHA3-256 of the base64 DER, spec §12) or
        MQTT_BASIC (credentialsValue is the JSON text {"clientId", "userName", "password"})."""
        body = await self._json(request)
        ref = body.get("deviceId") if isinstance(body, dict) else None
        d = self.store.device(ref.get("id")) if isinstance(ref, dict) else None
        if d is None:
            raise web.HTTPBadRequest(reason="Incorrect deviceId null")
        ctype = body.get("credentialsType")
        if ctype == "ACCESS_TOKEN":
            cid, value = body.get("credentialsId"), None
            if not isinstance(cid, str) or not cid or " " in cid:
                raise web.HTTPBadRequest(reason="Incorrect access token length [0]!")
        elif ctype == "X509_CERTIFICATE":
            from .dtls import cert_hash, pem_to_der

            value = body.get("credentialsValue")
            try:
                cid = cert_hash(pem_to_der(value))
            except (ValueError, TypeError, AttributeError, IndexError):
                raise web.HTTPBadRequest(reason="Failed to decode certificate!")
        elif ctype == "MQTT_BASIC":
            # credentialsValue: JSON text {"clientId", "userName", "password"} (spec-mqtt §2.2)
            from .mqttauth import basic_credentials_id

            try:
                basic = json.loads(body.get("credentialsValue") or "")
                cid = basic_credentials_id(basic.get("clientId"), basic.get("userName"))
            except (ValueError, TypeError, AttributeError) as exc:
                raise web.HTTPBadRequest(reason="Invalid MQTT_BASIC credentials: %s" % exc)
            value = json.dumps({k: basic.get(k) for k in ("clientId", "userName", "password")})
        else:
            raise web.HTTPBadRequest(reason="Unsupported credentials type %s" % (ctype,))
        try:
            d = self.store.set_credentials(d["id"], ctype, cid, value)
        except Conflict:
            raise web.HTTPBadRequest(reason="Specified credentials are already registered!")
        self.log.rest("POST", "/api/device/credentials", 200, "%s %s" % (d["name"], ctype))
        return web.json_response(_credentials_json(d))

    async def tenant_devices(self, request):
        name = request.query.get("deviceName")
        if name is not None:
            d = self.store.device_by_name(name)
            if d is None:
                raise web.HTTPNotFound(reason="Requested item wasn't found!")
            return web.json_response(device_json(d, self.store))
        items = [device_json(d, self.store) for d in self.store.devices()]
        text = request.query.get("textSearch")
        if text:
            items = [i for i in items if text.lower() in i["name"].lower()]
        return web.json_response(_page(items, request))

    # ---- device profiles
    async def create_profile(self, request):
        body = await self._json(request)
        if not isinstance(body, dict) or not body.get("name"):
            raise web.HTTPBadRequest(reason="Device profile name should be specified!")
        if isinstance(body.get("id"), dict) and body["id"].get("id"):
            # An update (ThingsBoard saves with the id): only the transport configuration is taken.
            p = self.store.profile(body["id"]["id"])
            if p is None:
                raise web.HTTPNotFound(reason="Requested item wasn't found!")
            _set_transport(self.store, "profiles", p["id"], body.get("profileData"))
            self.log.rest("POST", "/api/deviceProfile", 200, "updated %s" % p["name"])
            return web.json_response(profile_json(self.store.profile(p["id"])))
        prov = ((body.get("profileData") or {}).get("provisionConfiguration") or {})
        ptype = prov.get("type") or body.get("provisionType") or "DISABLED"
        key = body.get("provisionDeviceKey") or prov.get("provisionDeviceKey")
        secret = prov.get("provisionDeviceSecret")
        if ptype == ALLOW_CREATE and (not key or not secret):
            raise web.HTTPBadRequest(reason="Provision device key and secret should be specified!")
        if key and self.store.profile_by_provision_key(key) is not None:
            raise web.HTTPBadRequest(reason="Device profile with such provision device key already exists!")
        try:
            p = self.store.add_profile(body["name"], provision_type=ptype, key=key, secret=secret,
                                       transport_type=body.get("transportType") or "DEFAULT")
        except Conflict:
            raise web.HTTPBadRequest(reason="Device profile with such name already exists!")
        _set_transport(self.store, "profiles", p["id"], body.get("profileData"))
        p = self.store.profile(p["id"])
        self.log.rest("POST", "/api/deviceProfile", 200, "created %s" % p["name"])
        return web.json_response(profile_json(p))

    async def get_profile(self, request):
        p = self.store.profile(request.match_info["id"])
        if p is None:
            raise web.HTTPNotFound(reason="Requested item wasn't found!")
        return web.json_response(profile_json(p))

    async def list_profiles(self, request):
        return web.json_response(_page([profile_json(p) for p in self.store.profiles()], request))

    # ---- telemetry and attributes
    async def get_timeseries(self, request):
        d = self._device(request)
        keys = _keys(request)
        strict = request.query.get("useStrictDataTypes", "false").lower() == "true"
        q = request.query
        if "startTs" in q or "endTs" in q:
            if keys is None:
                raise web.HTTPBadRequest(reason="keys are required")
            try:
                start, end = int(q.get("startTs", "0")), int(q.get("endTs", str(now_ms())))
                limit = int(q.get("limit", "100"))
            except ValueError:
                raise web.HTTPBadRequest(reason="bad startTs/endTs/limit")
            rows = self.store.history(d["id"], keys, start, end, limit, q.get("orderBy", "DESC") == "ASC")
        else:
            rows = self.store.latest(d["id"], keys)
        out = {}
        for key, entries in rows.items():
            out[key] = [{"ts": e["ts"], "value": jsontypes.to_python(e["vtype"], e["v"]) if strict
                         else jsontypes.to_string(e["vtype"], e["v"])} for e in entries]
        return self._gson(out)

    def _gson(self, obj):
        return web.Response(text=jsontypes.dumps(obj), content_type="application/json")

    async def ts_keys(self, request):
        return web.json_response(self.store.ts_keys(self._device(request)["id"]))

    async def attr_keys(self, request):
        d = self._device(request)
        keys = []
        for scope in SCOPES:
            keys += [r["key"] for r in self.store.attributes(d["id"], scope)]
        return web.json_response(keys)

    async def get_attributes(self, request):
        d = self._device(request)
        scope = request.match_info.get("scope")
        if scope is not None and scope not in SCOPES:
            raise web.HTTPBadRequest(reason="Invalid attribute scope: " + scope)
        keys = _keys(request)
        out = []
        for s in [scope] if scope else SCOPES:
            for r in self.store.attributes(d["id"], s, keys):
                out.append({"lastUpdateTs": r["last_update_ts"], "key": r["key"],
                            "value": jsontypes.to_python(r["vtype"], r["v"])})
        return self._gson(out)

    async def save_attributes(self, request):
        d = self._device(request)
        scope = request.match_info["scope"]
        if scope not in (SHARED_SCOPE, SERVER_SCOPE):
            raise web.HTTPBadRequest(reason="Invalid scope: " + scope)
        try:
            kvs = jsontypes.parse_attributes(await request.read())
        except jsontypes.BadPayload:
            raise web.HTTPBadRequest(reason="Invalid request body")
        self.core.save_attributes(d["id"], scope, kvs)
        self.log.rest("POST", request.path, 200, "%s %s" % (d["name"], ",".join(k for k, _, _ in kvs)))
        return web.Response(status=200)

    async def save_timeseries(self, request):
        d = self._device(request)
        try:
            entries = jsontypes.parse_telemetry(await request.read(), now_ms())
        except jsontypes.BadPayload:
            raise web.HTTPBadRequest(reason="Invalid request body")
        self.store.save_telemetry(d["id"], entries)
        return web.Response(status=200)

    async def delete_attributes(self, request):
        d = self._device(request)
        scope = request.match_info["scope"]
        keys = _keys(request)
        if scope not in SCOPES or not keys:
            raise web.HTTPBadRequest(reason="Invalid scope or keys")
        deleted = self.core.delete_attributes(d["id"], scope, keys)
        self.log.rest("DELETE", request.path, 200, "%s %s" % (d["name"], ",".join(deleted)))
        return web.Response(status=200)

    # ---- RPC
    async def rpc_call(self, request):
        d = self._device(request)
        body = await self._json(request)
        if not isinstance(body, dict) or not isinstance(body.get("method"), str):
            raise web.HTTPBadRequest(reason="Invalid RPC request")
        oneway = request.match_info["kind"] == "oneway"
        try:
            timeout = int(body.get("timeout", 10000))  # server.rest.server_side_rpc.default_timeout
        except (TypeError, ValueError):
            raise web.HTTPBadRequest(reason="Invalid timeout")
        timeout = max(timeout, self.rpc_min_timeout_ms)
        params = body.get("params", {})
        label = "%s %s %s" % (request.match_info["kind"], d["name"], body["method"])
        if body.get("persistent"):
            rec = self.rpc.submit_persistent(d, body["method"], params, oneway, timeout)
            self.log.rest("POST", "rpc", 200, label + " persistent " + rec["id"])
            return web.json_response({"rpcId": rec["id"]})
        rec = await self.rpc.call(d, body["method"], params, oneway, timeout)
        if rec is None or rec["status"] == "FAILED":
            self.log.rest("POST", "rpc", 504, label + " (no answer)")
            return web.Response(status=504)
        self.log.rest("POST", "rpc", 200, label + (" -> " + rec["response"] if rec["response"] else ""))
        if oneway:
            return web.Response(status=200)
        return web.Response(text=rec["response"], content_type="application/json")

    async def get_rpc(self, request):
        rec = self.store.rpc(request.match_info["id"])
        if rec is None:
            raise web.HTTPNotFound(reason="Requested item wasn't found!")
        response = None
        if rec["response"] is not None:
            try:
                response = json.loads(rec["response"])
            except ValueError:
                response = rec["response"]
        return web.json_response({
            "id": _ref("RPC", rec["id"]), "createdTime": rec["created_time"], "tenantId": _ref("TENANT", _TENANT),
            "deviceId": _ref("DEVICE", rec["device_id"]), "expirationTime": rec["expiration_time"],
            "request": {"id": rec["seq"], "oneway": bool(rec["oneway"]),
                        "body": {"method": rec["method"], "params": rec["params"]}, "retries": rec["retries"]},
            "response": response, "status": rec["status"]})

    async def claim(self, request):
        d = self.store.device_by_name(request.match_info["name"])
        if d is None:
            raise web.HTTPNotFound(reason="Requested item wasn't found!")
        body = await self._json(request) if (await request.text()).strip() else {}
        secret = body.get("secretKey", "") if isinstance(body, dict) else ""
        info = self.store.claim(d["id"])
        ok = info is not None and info["secret_key"] == secret and now_ms() < info["ts"] + info["duration_ms"]
        self.log.rest("POST", request.path, 200 if ok else 400, "claim " + ("SUCCESS" if ok else "FAILURE"))
        return web.json_response({"device": device_json(d, self.store), "response": "SUCCESS" if ok else "FAILURE"},
                                 status=200 if ok else 400)
