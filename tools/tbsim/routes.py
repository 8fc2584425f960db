"""The CoAP device API: routing (spec §2), handlers, and which responses are typed (spec §3).

`typed=True` responses are those whose type ThingsBoard sets to the request's type (separate CON/NON);
`typed=False` ones (bare errors, provision, the first attribute-subscription response) are piggybacked
when the request is still unacknowledged.
"""

import asyncio
import re

from aiocoap.numbers import Code

from . import jsontypes, protomode
from .block1 import Block1Assembler
from .core import CLIENT_SCOPE, SHARED_SCOPE, flat_json
from .log import short
from .observe import ATTRIBUTES, RPC
from .provision import BadRequest, provision, provision_request
from .rpc import client_rpc
from .store import now_ms

FEATURES = ("attributes", "telemetry", "rpc", "claim", "provision")
_DIGITS = re.compile(r"[0-9]+\Z")
_INT = re.compile(r"[+-]?[0-9]+\Z")
_TEXT_PLAIN = 0
_JSON = 50
_LINK_FORMAT = 40


def split_path(options):
    """Uri-Path segments; one option holding slashes is split (TbCoapServerMessageDeliverer, spec §1)."""
    segs = list(options)
    if len(segs) == 1 and "/" in segs[0]:
        segs = [s for s in segs[0].split("/") if s]
    return segs


def feature_of(path):
    """CoapTransportResource.getFeatureType (spec §2.1): lower-case feature name or None."""
    n = len(path)
    if n >= 4:
        name = path[2] if n == 4 and _DIGITS.match(path[3]) else path[3]
    elif n == 3:
        if "provision" in path:
            return "provision"
        name = path[2]
    else:
        return None
    name = name.lower()
    return name if name in FEATURES else None


def request_id_of(path):
    """getRequestId: segment 4 with >= 5 segments, else segment 3; must be an int (spec §2.1)."""
    seg = path[4] if len(path) >= 5 else (path[3] if len(path) >= 4 else None)
    if seg is None or not _INT.match(seg):
        return None
    n = int(seg)
    return n if -(2**31) <= n < 2**31 else None


def query_keys(queries, name):
    """CoapAdaptorUtils.toKeys: options that split into exactly two parts on '=' (Java split semantics)."""
    keys = None
    for q in queries:
        parts = q.split("=")
        while parts and parts[-1] == "":
            parts.pop()  # Java's String.split drops trailing empty strings
        if len(parts) == 2 and parts[0] == name:
            keys = parts[1]
    if not keys:
        return None
    items = keys.split(",")
    while items and items[-1] == "":
        items.pop()
    return items


def masked_route(path):
    """The path for the log, with an access token cut to its first 4 characters (issue 8: no secrets in logs)."""
    if len(path) > 3 and path[:2] == ["api", "v1"] and len(path[2]) > 4:
        path = path[:2] + [path[2][:4] + "..."] + path[3:]
    return "/".join(path) or "/"


class Call:
    """One request being handled: answers it and writes its log line."""

    def __init__(self, api, ex, path):
        self.api = api
        self.ex = ex
        self.path = path
        self.route = masked_route(path)
        self.device = None
        self.proto = None  # protomode.ProtoProfile when the device's profile is PROTOBUF (spec §11)
        req = ex.request
        cf = req.opt.content_format
        self.content_format = int(cf) if cf is not None else _JSON  # spec §4: echo, else 50

    def describe_route(self, feature):
        tail = self.path[4:] if len(self.path) > 4 else []
        route = "/".join([feature] + tail)
        if self.ex.request.opt.uri_query:
            route += "?" + "&".join(self.ex.request.opt.uri_query)
        obs = self.ex.request.opt.observe
        if obs is not None:
            route += " Observe=%d" % obs
        self.route = route

    def reply(self, code, payload=b"", typed=True, content_format=None, observe=None, on_ack=None, extra=None):
        shape = self.ex.respond(code, payload, typed=typed, content_format=content_format, observe=observe,
                                on_ack=on_ack, extra=extra)
        note = code.dotted
        if observe is not None:
            note += " Observe=%d" % observe
        block2 = self.ex.response.opt.block2 if self.ex.response is not None else None
        if block2 is not None:
            note += " Block2=%d/%d/%d" % (block2.block_number, block2.more, 16 << block2.size_exponent)
        if payload and self.path[:1] not in (["fw"], ["sw"]):
            note += " " + short(payload)
        elif payload:
            note += " <%d bytes>" % len(payload)
        self._log(note + " (" + shape + ")")

    def no_answer(self, why):
        if self.ex.con and self.ex.empty_ack_sent:
            self._log("no response after the empty ACK (%s)" % why)
        elif self.ex.con:
            self.ex.on_accept = lambda ex: self._log("empty ACK only (%s)" % why)
        else:
            self._log("no response (%s)" % why)

    def _log(self, outcome):
        req = self.ex.request
        name = self.device["name"] if self.device else None
        self.api.log.coap(self.ex.peer, req.mtype.name, req.code.name, self.route, name, req.payload, outcome)


class DeviceApi:
    def __init__(self, store, core, observe, rpc, log, ota, delay=0.0):
        self.store = store
        self.ota = ota
        self.block1 = Block1Assembler()
        self.core = core
        self.observe = observe
        self.rpc = rpc
        self.log = log
        self.dtls = None  # dtls.DtlsServer when --dtls-port serves coaps: X.509 sessions (spec §12)
        self.delay = delay  # --delay-ms: a slow core, to exercise the empty-ACK path of spec §3
        # --serve-documented-firmware-path: what the seed pages promise, not what ThingsBoard does
        self.serve_documented_firmware_path = False

    def handle(self, ex):
        if self.delay > 0:
            asyncio.get_running_loop().call_later(self.delay, self._handle, ex)
        else:
            self._handle(ex)

    def _handle(self, ex):
        if not self.block1.feed(ex):
            req, b = ex.request, ex.request.opt.block1
            note = "%s (Block1=%d/%d/%d)" % (ex.response.code.dotted, b.block_number, b.more, 16 << b.size_exponent)
            return self.log.coap(ex.peer, req.mtype.name, req.code.name, "block", None, None, note)
        req = ex.request
        call = Call(self, ex, split_path(req.opt.uri_path))
        path = call.path
        if not path:
            if req.code == Code.GET:  # Californium's RootResource banner
                return call.reply(Code.CONTENT, b"tbsim: a local ThingsBoard device API", typed=False,
                                  content_format=_TEXT_PLAIN)
            return call.reply(Code.METHOD_NOT_ALLOWED, typed=False)
        if path == [".well-known", "core"]:
            if req.code == Code.GET:
                return call.reply(Code.CONTENT, b"</api>,</fw>,</sw>", typed=False, content_format=_LINK_FORMAT)
            return call.reply(Code.METHOD_NOT_ALLOWED, typed=False)
        if path[0] in ("fw", "sw"):
            return self._ota(call)
        if (self.serve_documented_firmware_path and len(path) == 4 and path[:2] == ["api", "v1"]
                and path[3] in ("firmware", "software")):
            call.path = ["fw" if path[3] == "firmware" else "sw", path[2]]
            return self._ota(call)
        if path[:2] == ["api", "v1"]:
            return self._transport(call)
        if path == ["api"]:
            return call.reply(Code.METHOD_NOT_ALLOWED, typed=False)
        return call.reply(Code.NOT_FOUND, typed=False)  # ServerMessageDeliverer: no such resource (spec §2.3)

    # ---- /api/v1/... (CoapTransportResource)
    def _transport(self, call):
        req = call.ex.request
        if req.code not in (Code.GET, Code.POST):
            return call.reply(Code.METHOD_NOT_ALLOWED, typed=False)  # CF CoapResource default handlers
        feature = feature_of(call.path)
        if feature is None:
            return call.reply(Code.BAD_REQUEST, typed=False)
        call.describe_route(feature)
        if req.code == Code.GET:
            observe = req.opt.observe
            if feature == "telemetry":
                return call.reply(Code.BAD_REQUEST, typed=False)
            if observe is None and feature != "attributes":
                return call.reply(Code.BAD_REQUEST, typed=False)
        elif feature == "provision":
            return self._provision(call)
        device = self._authenticate(call)
        if device is None:
            return None
        if req.code == Code.GET:
            if req.opt.observe is not None:
                if req.opt.observe == 1:
                    return self._deregister(call)
                if feature == "rpc":
                    return self._subscribe_rpc(call)
                return self._subscribe_attributes(call)  # any non-RPC feature (spec §2.3 quirk)
            return self._get_attributes(call)
        if feature == "telemetry":
            return self._post_telemetry(call)
        if feature == "attributes":
            return self._post_attributes(call)
        if feature == "claim":
            return self._claim(call)
        rid = request_id_of(call.path)
        if rid is not None:
            return self._rpc_reply(call, rid)
        return self._client_rpc(call)

    def _authenticate(self, call):
        path = call.path
        token = path[2] if len(path) > 3 else None  # decodeCredentials (spec §2.1)
        # A DTLS session whose client certificate is a device's X.509 credentials names the device, and the
        # path token is then ignored (spec §12, getCoapDtlsSessionInfo); otherwise the token decides.
        device = self.dtls.device(call.ex.peer) if self.dtls is not None else None
        if device is None and token is not None:
            device = self.store.device_by_token(token)
        if device is None:
            call.reply(Code.UNAUTHORIZED, typed=False)
            return None
        call.device = device
        call.proto = protomode.for_device(self.store, device)
        self.core.uplink(device["id"])  # every api/v1 request wakes a power-saving device (spec §13)
        return device

    def _post_telemetry(self, call):
        payload = call.ex.request.payload
        try:
            if call.proto is not None:  # the profile's schema -> JsonFormat JSON -> the JSON rules (spec §11.1)
                payload = protomode.uplink_json(call.proto.telemetry, payload)
            entries = jsontypes.parse_telemetry(payload, now_ms())
        except (jsontypes.BadPayload, protomode.BadPayload):
            return call.reply(Code.BAD_REQUEST, typed=False)
        self.store.save_telemetry(call.device["id"], entries)
        call.reply(Code.CREATED)

    def _post_attributes(self, call):
        payload = call.ex.request.payload
        try:
            if call.proto is not None:
                payload = protomode.uplink_json(call.proto.attributes, payload)
            kvs = jsontypes.parse_attributes(payload)
        except (jsontypes.BadPayload, protomode.BadPayload):
            return call.reply(Code.BAD_REQUEST, typed=False)
        self.core.save_attributes(call.device["id"], CLIENT_SCOPE, kvs)
        call.reply(Code.CREATED)

    def _get_attributes(self, call):
        queries = call.ex.request.opt.uri_query
        client_keys = query_keys(queries, "clientKeys")
        shared_keys = query_keys(queries, "sharedKeys")
        did = call.device["id"]
        if client_keys is None and shared_keys is None:
            client = self.store.attributes(did, CLIENT_SCOPE)
            shared = self.store.attributes(did, SHARED_SCOPE)
        else:
            client = self.store.attributes(did, CLIENT_SCOPE, client_keys) if client_keys else []
            shared = self.store.attributes(did, SHARED_SCOPE, shared_keys) if shared_keys else []
        if not client and not shared:
            return call.reply(Code.NOT_FOUND)  # spec §6.1: 4.04 with no payload
        if call.proto is not None:
            return call.reply(Code.CONTENT, protomode.attribute_response(client, shared),
                              content_format=protomode.CONTENT_FORMAT)
        parts = []
        if client:
            parts.append('"client":' + flat_json(client))
        if shared:
            parts.append('"shared":' + flat_json(shared))
        call.reply(Code.CONTENT, ("{" + ",".join(parts) + "}").encode(), content_format=call.content_format)

    def _subscribe_attributes(self, call):
        rel = self.observe.register(call.ex, call.device, ATTRIBUTES)
        shared = self.store.attributes(call.device["id"], SHARED_SCOPE)
        payload = flat_json(shared).encode()
        if call.proto is not None:  # AttributeUpdateNotificationMsg, empty bytes when none (spec §6.2)
            rel.proto, rel.content_format = call.proto, protomode.CONTENT_FORMAT
            payload = protomode.attribute_update(payload) if shared else b""
        # First response: type left unset, so piggybacked when in time (spec §3, §6.2).
        call.reply(Code.CONTENT, payload, typed=False, content_format=rel.content_format,
                   observe=rel.next_observe())

    def _subscribe_rpc(self, call):
        rel = self.observe.register(call.ex, call.device, RPC)
        if call.proto is not None:
            rel.proto, rel.content_format = call.proto, protomode.CONTENT_FORMAT
        # 2.03 Valid, Observe=0, empty payload, no Content-Format; typed (spec §7).
        call.reply(Code.VALID, observe=rel.next_observe())
        self.rpc.send_pending(call.device["id"])

    def _deregister(self, call):
        rel = self.observe.deregister(call.ex.peer, call.ex.request.token)
        call.no_answer("deregistered" if rel is not None else "nothing to deregister")

    def _rpc_reply(self, call, rid):
        payload = call.ex.request.payload
        if not payload:
            return call.reply(Code.BAD_REQUEST, typed=False)
        if call.proto is not None:  # the profile's RPC response schema, as JSON text (spec §11.1)
            try:
                text = protomode.uplink_json(call.proto.rpc_response, payload)
            except protomode.BadPayload:
                return call.reply(Code.BAD_REQUEST, typed=False)
            self.rpc.reply(call.device["id"], rid, text)
            return call.reply(Code.CREATED)
        try:
            body = jsontypes.loads(payload)
        except jsontypes.BadPayload:
            return call.reply(Code.INTERNAL_SERVER_ERROR, typed=False)
        if not isinstance(body, dict):
            return call.reply(Code.INTERNAL_SERVER_ERROR, typed=False)  # spec §2.3: not a JSON object
        self.rpc.reply(call.device["id"], rid, bytes(payload).decode("utf-8"))
        call.reply(Code.CREATED)  # also for an unknown id (spec §7)

    def _client_rpc(self, call):
        payload = call.ex.request.payload
        if not payload:
            return call.reply(Code.BAD_REQUEST, typed=False)
        try:
            if call.proto is not None:  # transportapi.RpcRequest (spec §8, §11.2)
                method, params = protomode.client_rpc(payload)
                body = {"method": method, "params": params} if method else {}
            else:
                body = jsontypes.loads(payload)
        except (jsontypes.BadPayload, protomode.BadPayload):
            return call.reply(Code.INTERNAL_SERVER_ERROR, typed=False)
        if not isinstance(body, dict) or not isinstance(body.get("method"), str):
            return call.reply(Code.INTERNAL_SERVER_ERROR, typed=False)  # spec §8: missing method -> 5.00
        answer = client_rpc(body["method"], body.get("params"))
        if answer is None:
            return call.no_answer("no RPC call reply node for %r" % body["method"])
        delay, text = answer
        if call.proto is not None:  # transport.ToServerRpcResponseMsg, Content-Format 42
            data, cf = protomode.client_rpc_response(text), protomode.CONTENT_FORMAT
        else:
            data, cf = text.encode(), call.content_format
        send = lambda: call.reply(Code.CONTENT, data, content_format=cf)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, send)
        else:
            send()

    def _claim(self, call):
        payload = call.ex.request.payload
        secret, duration = "", 0
        if call.proto is not None:  # transportapi.ClaimDevice (spec §14)
            try:
                secret, duration = protomode.claim(payload)
            except protomode.BadPayload:
                return call.reply(Code.BAD_REQUEST, typed=False)
        elif payload:
            try:
                body = jsontypes.loads(payload)
            except jsontypes.BadPayload:
                return call.reply(Code.BAD_REQUEST, typed=False)
            if not isinstance(body, dict):
                return call.reply(Code.BAD_REQUEST, typed=False)
            if body.get("secretKey") is not None:
                secret = str(body["secretKey"])
            if body.get("durationMs") is not None:
                try:
                    duration = int(str(body["durationMs"]))
                except ValueError:
                    return call.reply(Code.BAD_REQUEST, typed=False)
        if duration <= 0:
            duration = 86400000  # security.claim.duration (spec §14)
        self.store.save_claim(call.device["id"], secret, duration)
        call.reply(Code.CREATED)

    def _provision(self, call):
        payload = call.ex.request.payload
        try:
            jsontypes.loads(payload)
            proto = False
        except jsontypes.BadPayload:
            proto = bool(payload)  # not JSON: the server parses ProvisionDeviceRequestMsg (spec §9)
        try:
            if proto:
                ok, body = provision_request(self.store, protomode.provision_request(payload))
            else:
                ok, body = provision(self.store, payload)
        except (BadRequest, protomode.BadPayload):
            return call.reply(Code.BAD_REQUEST, typed=False)
        if proto:  # ProvisionDeviceResponseMsg, no Content-Format (spec §4)
            return call.reply(Code.CREATED if ok else Code.BAD_REQUEST, protomode.provision_response(body),
                              typed=False)
        # Type unset (piggybacked), Content-Format 0 via CoapExchange.respond(code, String) (spec §4, §9).
        call.reply(Code.CREATED if ok else Code.BAD_REQUEST, jsontypes.dumps(body).encode(), typed=False,
                   content_format=_TEXT_PLAIN)

    # ---- /fw/{token}, /sw/{token} (OtaPackageTransportResource, spec §10.2)
    def _ota(self, call):
        call.route = "/".join(call.path[:1] + ["<token>"] * (len(call.path) > 1)) + (
            ("?" + "&".join(call.ex.request.opt.uri_query)) if call.ex.request.opt.uri_query else "")
        if call.ex.request.opt.block2 is not None:
            b = call.ex.request.opt.block2
            call.route += " Block2=%d/%d" % (b.block_number, 16 << b.size_exponent)
        self.ota.handle_coap(call)
