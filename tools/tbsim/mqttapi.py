"""ThingsBoard's MQTT device API (spec thingsboard-mqtt.md §3-§12) on tbsim's store, core, RPC and OTA services:
which topic a PUBLISH or SUBSCRIBE names, what it does, and what goes back. The CoAP and HTTP transports do the
same work through routes.py and httpdevice.py; this is the third front end, and only an adapter.

Outcomes follow MqttTransportHandler: a PUBACK once the message is accepted (before any response); a payload the
adaptor cannot parse closes the connection without a PUBACK (`Malformed`; a plain PUBACK instead when the
profile's sendAckOnValidationException is on); an exception in the handler always closes it (`Fatal`); an
unknown topic gets an ordinary PUBACK.
"""

import re

from google.protobuf.message import DecodeError

from . import jsontypes, lenient, mqttwire, protomode
from .core import CLIENT_SCOPE, SHARED_SCOPE, flat_json
from .log import short
from .ota import FIRMWARE, SOFTWARE
from .power import BadConfiguration
from .provision import BadRequest, provision_request
from .protoschema import builtin
from .rpc import client_rpc
from .store import now_ms

REFUSED = 0x80
PROVISION_REQUEST = "/provision/request"
PROVISION_RESPONSE = "/provision/response"
CLAIM = "v1/devices/me/claim"
_OTA = re.compile(r"v2/(fw|sw)/request/(\d+)/chunk/(\d+)")  # Matcher.find(): anywhere in the topic
_MAX_CHUNK = mqttwire.MAX_REMAINING  # a larger chunk size is PAYLOAD_TOO_LARGE (§11.2)
_INT = re.compile(r"[+-]?[0-9]+\Z")
_JSON, _PROTO = "json", "proto"


class Malformed(ValueError):
    """The adaptor cannot parse the payload (AdaptorException): close without PUBACK (§3.5)."""


class Fatal(ValueError):
    """An unchecked exception in the handler (no method, a non-numeric id or chunk size): close (§3.5)."""


class Family:
    """One topic family (§12.1): v1, v2 (the profile's format), v2 JSON, v2 protobuf."""

    def __init__(self, name, telemetry, attributes, attr_req, attr_res, rpc_req, rpc_res, fmt=None):
        self.name = name
        self.telemetry = telemetry
        self.attributes = attributes   # client attributes up, shared-attribute updates down
        self.attr_req = attr_req       # attribute request prefix ({id} follows)
        self.attr_res = attr_res
        self.rpc_req = rpc_req         # server RPC down, client RPC up
        self.rpc_res = rpc_res         # server RPC reply up, client RPC answer down
        self.fmt = fmt                 # None: the device profile's payload type


V1 = Family("v1", "v1/devices/me/telemetry", "v1/devices/me/attributes", "v1/devices/me/attributes/request/",
            "v1/devices/me/attributes/response/", "v1/devices/me/rpc/request/", "v1/devices/me/rpc/response/")
V2 = Family("v2", "v2/t", "v2/a", "v2/a/req/", "v2/a/res/", "v2/r/req/", "v2/r/res/")
V2J = Family("v2/j", "v2/t/j", "v2/a/j", "v2/a/req/j/", "v2/a/res/j/", "v2/r/req/j/", "v2/r/res/j/", _JSON)
V2P = Family("v2/p", "v2/t/p", "v2/a/p", "v2/a/req/p/", "v2/a/res/p/", "v2/r/req/p/", "v2/r/res/p/", _PROTO)
_V2 = (V2J, V2P, V2)  # the /j and /p prefixes are tested before the plain v2 ones, as in processDevicePublish
_ATTR_FILTERS = {f.attributes: f for f in (V1, V2, V2J, V2P)}
_RPC_FILTERS = {f.rpc_req + "+": f for f in (V1, V2, V2J, V2P)}
# Filters that only record a QoS for matching downlinks (MTH.processSubscribe).
_QOS_FILTERS = frozenset([f.rpc_res + "+" for f in (V1, V2, V2J, V2P)] + [f.attr_res + "+" for f in (V1, V2, V2J, V2P)]
                         + ["v2/fw/response/+/chunk/+", "v2/fw/error", "v2/sw/response/+/chunk/+", "v2/sw/error",
                            "v1/gateway/attributes", "v1/gateway/rpc", "v1/gateway/attributes/response"])


def profile_transport(cfg):
    """profileData.transportConfiguration of type MQTT from REST -> the stored form: the payload type and its
    schemas, and sendAckOnValidationException; custom topic filters and Sparkplug are kept but not used."""
    payload = cfg.get("transportPayloadTypeConfiguration") or {"transportPayloadType": "JSON"}
    if not isinstance(payload, dict):
        raise BadConfiguration("transportPayloadTypeConfiguration must be an object")
    out = dict(cfg, type="MQTT", transportPayloadTypeConfiguration=payload)
    out["sendAckOnValidationException"] = bool(cfg.get("sendAckOnValidationException"))
    return out


def loads(payload):
    """Gson's JsonParser, lenient as ThingsBoard uses it (lenient.py), so the docs' `mosquitto_pub -m
    {"temperature":25}`, which reaches the server as {temperature:25}, works as on ThingsBoard. Strict JSON is
    read as it is; numbers keep their literal text (jsontypes.RawNumber). Raises Malformed."""
    try:
        return jsontypes.loads(payload)
    except jsontypes.BadPayload as exc:
        try:
            return jsontypes.loads(lenient.to_strict(bytes(payload).decode("utf-8")))
        except (ValueError, jsontypes.BadPayload):
            raise Malformed(str(exc)) from exc


def java_int(text):
    """Integer.parseInt, or None where it throws."""
    if not _INT.match(text):
        return None
    n = int(text)
    return n if -(2**31) <= n < 2**31 else None


def java_split(text):
    """String.split(","): trailing empty strings dropped; an empty result means 'no keys' (§5)."""
    items = text.split(",")
    while items and items[-1] == "":
        items.pop()
    return items or None


class MqttDeviceApi:
    def __init__(self, store, core, rpc, ota, log, client_rpc_timeout=60.0, provision_close=60.0):
        self.store = store
        self.core = core
        self.rpc = rpc
        self.ota = ota
        self.log = log
        self.client_rpc_timeout = client_rpc_timeout  # transport.client_side_rpc.timeout (§8)
        self.provision_close = provision_close        # the close 60 s after a provisioning response (§10)

    # ---- SUBSCRIBE / UNSUBSCRIBE (§3.2)
    def subscribe(self, conn, topic_filter, qos):
        if conn.provisioning:
            ok = topic_filter == PROVISION_RESPONSE
        else:
            ok = topic_filter in _ATTR_FILTERS or topic_filter in _RPC_FILTERS or topic_filter in _QOS_FILTERS
        if not ok:
            return REFUSED  # the filter is an exact string: wildcards of its own are refused
        granted = min(qos, 1)
        conn.subs[topic_filter] = granted
        if topic_filter in _ATTR_FILTERS:
            conn.attr_family = _ATTR_FILTERS[topic_filter]  # no snapshot is sent (§6)
        elif topic_filter in _RPC_FILTERS:
            conn.rpc_family = _RPC_FILTERS[topic_filter]
        return granted

    def subscribed(self, conn, topics):
        """After the SUBACK: an RPC subscription pushes every pending RPC again, each time (§7)."""
        if any(t in _RPC_FILTERS for t, _ in topics):
            self.rpc.send_pending(conn.device["id"])

    def unsubscribe(self, conn, topic_filter):
        conn.subs.pop(topic_filter, None)
        if topic_filter in _ATTR_FILTERS and conn.attr_family is _ATTR_FILTERS[topic_filter]:
            conn.attr_family = None
        elif topic_filter in _RPC_FILTERS and conn.rpc_family is _RPC_FILTERS[topic_filter]:
            conn.rpc_family = None

    # ---- PUBLISH from the device (§3.1)
    def publish(self, conn, topic, payload, qos, pid):
        done = []

        def ack():
            if qos and not done:  # QoS 2 gets a PUBACK too (§3.4)
                done.append(True)
                conn.send(mqttwire.puback(pid))

        head = "PUBLISH q%d %s %s" % (qos, topic, "<%d bytes>" % len(payload) if topic.startswith("v2/") and
                                      "/chunk/" in topic else short(payload))
        try:
            note = (self._provision(conn, topic, payload, ack) if conn.provisioning
                    else self._route(conn, topic, payload, ack))
        except Malformed as exc:
            if conn.send_ack_on_error:
                ack()
                return conn.log("%s -> PUBACK (malformed: %s; sendAckOnValidationException)" % (head, exc))
            conn.log("%s -> malformed (%s)" % (head, exc))
            return conn.close("malformed payload: no PUBACK")
        except Fatal as exc:
            conn.log("%s -> %s" % (head, exc))
            return conn.close("exception in the handler")
        conn.log(head + " -> " + ("PUBACK" if done else "no PUBACK" if qos else "-") + (" " + note if note else ""))

    def _route(self, conn, topic, payload, ack):
        if topic.startswith("v1/gateway/"):
            return "(gateway API from a device that is not a gateway: dropped)"
        if topic == V1.attributes:
            return self._attributes(conn, V1, payload, ack)
        if topic == V1.telemetry:
            return self._telemetry(conn, V1, payload, ack)
        if topic.startswith(V1.attr_req):
            return self._attribute_request(conn, V1, topic[len(V1.attr_req):], payload, ack)
        if topic.startswith(V1.rpc_res):
            return self._rpc_reply(conn, V1, topic[len(V1.rpc_res):], payload, ack)
        if topic.startswith(V1.rpc_req):
            return self._client_rpc(conn, V1, topic[len(V1.rpc_req):], payload, ack)
        if topic == CLAIM:
            return self._claim(conn, payload, ack)
        m = _OTA.search(topic)
        if m is not None:
            return self._ota(conn, m.group(1), m.group(2), m.group(3), payload, ack)
        for fam in (V2, V2J, V2P):
            if topic == fam.telemetry:
                return self._telemetry(conn, fam, payload, ack)
        for fam in (V2, V2J, V2P):
            if topic == fam.attributes:
                return self._attributes(conn, fam, payload, ack)
        for kind in ("rpc_res", "rpc_req", "attr_req"):
            for fam in _V2:
                prefix = getattr(fam, kind)
                if topic.startswith(prefix):
                    handler = {"rpc_res": self._rpc_reply, "rpc_req": self._client_rpc,
                               "attr_req": self._attribute_request}[kind]
                    return handler(conn, fam, topic[len(prefix):], payload, ack)
        ack()
        return "(unknown topic: ignored)"

    def _fmt(self, conn, fam):
        return fam.fmt or (_PROTO if conn.proto is not None else _JSON)

    def _uplink(self, conn, fam, role, payload):
        """The JSON text of telemetry, attributes or an RPC reply: the profile's schema for protobuf (§12.2)."""
        if self._fmt(conn, fam) == _JSON:
            return jsontypes.dumps(loads(payload))
        if conn.proto is None:
            raise Malformed("a JSON profile has no protobuf schema")  # ProtoConverter.validateDescriptor
        try:
            return protomode.uplink_json(getattr(conn.proto, role), payload)
        except protomode.BadPayload as exc:
            raise Malformed(str(exc)) from exc

    @staticmethod
    def _builtin(name, payload):
        try:
            return builtin(name).FromString(bytes(payload))
        except DecodeError as exc:
            raise Malformed("not a %s: %s" % (name, exc)) from exc

    # ---- telemetry and client attributes (§4)
    def _telemetry(self, conn, fam, payload, ack):
        text = self._uplink(conn, fam, "telemetry", payload)
        try:
            entries = jsontypes.parse_telemetry(text, now_ms())
        except jsontypes.BadPayload as exc:
            raise Malformed(str(exc)) from exc
        if not entries:
            return "(an empty array makes no message, so no PUBACK ever comes)"
        self.store.save_telemetry(conn.device["id"], entries)
        ack()
        return None

    def _attributes(self, conn, fam, payload, ack):
        text = self._uplink(conn, fam, "attributes", payload)
        try:
            kvs = jsontypes.parse_attributes(text)
        except jsontypes.BadPayload as exc:
            raise Malformed(str(exc)) from exc
        self.core.save_attributes(conn.device["id"], CLIENT_SCOPE, kvs)
        ack()
        return None

    # ---- attribute request (§5)
    def _attribute_request(self, conn, fam, id_text, payload, ack):
        rid = java_int(id_text)
        if rid is None:
            raise Malformed("request id %r is not an int" % id_text)
        if self._fmt(conn, fam) == _PROTO:
            msg = self._builtin("transportapi.AttributesRequest", payload)
            client = java_split(msg.clientKeys) if msg.clientKeys else None
            shared = java_split(msg.sharedKeys) if msg.sharedKeys else None
        else:
            body = loads(payload)
            if not isinstance(body, dict):
                raise Malformed("the request must be a JSON object")
            client, shared = self._keys(body, "clientKeys"), self._keys(body, "sharedKeys")
        ack()
        if rid < 0:
            return "(negative id: no response)"
        did = conn.device["id"]
        if client is None and shared is None:
            client_rows, shared_rows = self.store.attributes(did, CLIENT_SCOPE), self.store.attributes(did, SHARED_SCOPE)
        else:
            client_rows = self.store.attributes(did, CLIENT_SCOPE, client) if client else []
            shared_rows = self.store.attributes(did, SHARED_SCOPE, shared) if shared else []
        if self._fmt(conn, fam) == _PROTO:
            data = protomode.attribute_response(client_rows, shared_rows)
        else:
            parts = (['"client":' + flat_json(client_rows)] if client_rows else []) + (
                ['"shared":' + flat_json(shared_rows)] if shared_rows else [])
            data = ("{" + ",".join(parts) + "}").encode()  # {} when nothing is found
        topic = fam.attr_res + str(rid)
        _, qos = conn.publish(topic, data)
        return "then PUBLISH q%d %s %s" % (qos, topic, short(data))

    @staticmethod
    def _keys(body, name):
        """JsonMqttAdaptor.toStringSet: a string (or a one-element array) split on ',', not trimmed."""
        if name not in body:
            return None
        value = body[name]
        if isinstance(value, list):
            if len(value) != 1:
                raise Malformed("%s: an array must have exactly one element" % name)
            value = value[0]
        if value is None or isinstance(value, (dict, list)):
            raise Fatal("%s is not a string" % name)
        text = value if isinstance(value, str) else jsontypes.dumps(value)
        return java_split(text)

    # ---- server-side RPC (§7)
    def server_rpc(self, conn, rec):
        """Send one RPC to the device's RPC subscription; QoS 1 waits for the device's PUBACK."""
        fam = conn.rpc_family
        if self._fmt(conn, fam) == _PROTO:
            if conn.proto is None:
                return self.rpc.fail(rec, "no protobuf schema for a JSON profile")
            try:
                payload = protomode.rpc_request(conn.proto, rec)
            except protomode.ConvertError as exc:
                return self.rpc.fail(rec, str(exc))  # the subscription is kept, unlike CoAP
        else:
            params = jsontypes.to_python(jsontypes.JSON, rec["params"])
            payload = jsontypes.dumps({"method": rec["method"], "params": params}).encode()  # no "id" (§7)
        topic = fam.rpc_req + str(rec["seq"])
        pid, qos = conn.publish(topic, payload)
        if qos:
            conn.rpc_acks[pid] = rec["id"]
            self.rpc.mark_sent(rec["id"])
        else:
            self.rpc.mark_delivered(rec["id"])
        conn.log("RPC PUBLISH q%d %s %s" % (qos, topic, short(payload)))

    def _rpc_reply(self, conn, fam, id_text, payload, ack):
        rid = java_int(id_text)
        if rid is None:
            raise Malformed("request id %r is not an int" % id_text)
        if self._fmt(conn, fam) == _PROTO:
            text = self._uplink(conn, fam, "rpc_response", payload)
        else:
            text = bytes(payload).decode("utf-8", "replace")  # passed on verbatim, not checked to be JSON
        known = self.rpc.reply(conn.device["id"], rid, text)
        ack()
        return None if known else "(no pending RPC %d: stale reply)" % rid

    # ---- client-side RPC (§8)
    def _client_rpc(self, conn, fam, id_text, payload, ack):
        rid = java_int(id_text)
        if rid is None:
            raise Fatal("client RPC id %r is not an int" % id_text)
        proto = self._fmt(conn, fam) == _PROTO
        if proto:
            msg = self._builtin("transportapi.RpcRequest", payload)
            try:
                params = jsontypes.loads(msg.params) if msg.params.strip() else None
            except jsontypes.BadPayload as exc:
                raise Malformed(str(exc)) from exc
            method = msg.method
        else:
            body = loads(payload)
            if not isinstance(body, dict):
                raise Malformed("the request must be a JSON object")
            if not isinstance(body.get("method"), str):
                raise Fatal("client RPC without a method")  # a NullPointerException in ThingsBoard
            method, params = body["method"], body.get("params")
        ack()
        topic = fam.rpc_res + str(rid)

        def answer(text, error=None):
            if proto:
                msg = builtin("transport.ToServerRpcResponseMsg")(requestId=rid)
                if error is not None:
                    msg.error = error
                else:
                    msg.payload = text
                data = msg.SerializeToString()
            else:
                data = text.encode()
            _, qos = conn.publish(topic, data)
            conn.log("client RPC %s -> PUBLISH q%d %s %s" % (method, qos, topic, short(data)))

        if method == "getSessionLimits" and fam is V1:  # answered by the transport itself (§8.1)
            answer(jsontypes.dumps({"maxPayloadSize": _MAX_CHUNK, "maxInflightMessages": 100, "rateLimits": {
                "messages": None, "telemetryMessages": None, "telemetryDataPoints": None}}))
            return None
        reply = client_rpc(method, params)
        if reply is None:
            conn.later(self.client_rpc_timeout, lambda: answer('{"error":"timeout"}', error="timeout"))
            return "(no rule-chain reply: {\"error\":\"timeout\"} after %g s)" % self.client_rpc_timeout
        delay, text = reply
        if delay > 0:
            conn.later(delay, lambda: answer(text))
        else:
            answer(text)
        return None

    # ---- claiming (§9)
    def _claim(self, conn, payload, ack):
        secret, duration = "", 0
        if conn.proto is not None:
            msg = self._builtin("transportapi.ClaimDevice", payload)
            secret, duration = msg.secretKey, msg.durationMs
        elif payload:
            body = loads(payload)
            if not isinstance(body, dict):
                raise Malformed("the claim must be a JSON object")
            if body.get("secretKey") is not None:
                secret = str(body["secretKey"])
            if body.get("durationMs") is not None:
                duration = java_int(str(body["durationMs"]))
                if duration is None:
                    raise Malformed("durationMs is not a number")
        self.store.save_claim(conn.device["id"], secret, duration if duration > 0 else 86400000)
        ack()
        return None  # the device is never told whether the claim was registered

    # ---- OTA chunks (§11.2)
    def _ota(self, conn, kind, request_id, chunk_text, payload, ack):
        size = 0
        if payload:
            size = java_int(bytes(payload).decode("utf-8", "replace"))
            if size is None:
                raise Fatal("chunk size %r is not a number" % short(payload))  # a newline too
        chunk = java_int(chunk_text)
        if chunk is None:
            raise Fatal("chunk index out of range")
        if size > 0:
            conn.ota_sizes[request_id] = size
        else:
            size = conn.ota_sizes.get(request_id, 0)  # 0: the whole image in one PUBLISH
        if size > _MAX_CHUNK:
            return self._ota_error(conn, "PAYLOAD_TOO_LARGE")
        package_id = conn.ota.get(request_id)  # one package per requestId for the whole connection
        if package_id is None:
            package = self.store.assigned_ota(conn.device["id"], FIRMWARE if kind == "fw" else SOFTWARE)
            if package is None or (package["data"] is None and not package["url"]):
                return self._ota_error(conn, "NOT_FOUND")
            if package["data"] is None:
                return self._ota_error(conn, "FAILURE")  # a URL package is not served over MQTT
            package_id = conn.ota[request_id] = package["id"]
        data = self.store.ota_package(package_id)["data"]
        piece = data if size == 0 else data[size * chunk:size * chunk + size]  # past the end: b""
        ack()
        topic = "v2/%s/response/%s/chunk/%d" % (kind, request_id, chunk)
        _, qos = conn.publish(topic, piece)
        return "then PUBLISH q%d %s <%d bytes>" % (qos, topic, len(piece))

    @staticmethod
    def _ota_error(conn, error):
        # Published on v2/fw/error even for software, then the connection is closed; no PUBACK.
        conn.publish("v2/fw/error", error.encode())
        conn.later(0, lambda: conn.close("OTA error " + error))
        return "(OTA error: PUBLISH v2/fw/error %s, then close)" % error

    # ---- provisioning session (§10)
    def _provision(self, conn, topic, payload, ack):
        if topic != PROVISION_REQUEST:
            ack()
            conn.later(0, lambda: conn.close("a provisioning session publishes only to " + PROVISION_REQUEST))
            return "(not %s: closing)" % PROVISION_REQUEST
        proto = False
        try:
            obj = loads(payload)
            if not isinstance(obj, dict):
                raise Malformed("not an object")
        except Malformed:
            proto = True  # JSON failed: ProvisionDeviceRequestMsg, and the answer in the same format
            try:
                obj = protomode.provision_request(payload)
            except protomode.BadPayload as exc:
                raise Malformed("neither JSON nor ProvisionDeviceRequestMsg: %s" % exc) from exc
        try:
            _, body = provision_request(self.store, obj)
        except BadRequest as exc:
            ack()
            conn.later(0, lambda: conn.close("provisioning request without key or secret"))
            return "(%s: closing, no response)" % exc
        ack()
        data = protomode.provision_response(body) if proto else jsontypes.dumps(body).encode()
        _, qos = conn.publish(PROVISION_RESPONSE, data)
        conn.later(self.provision_close, lambda: conn.close("%g s after the provisioning response"
                                                            % self.provision_close))
        return "then PUBLISH q%d %s %s" % (qos, PROVISION_RESPONSE, "<protobuf>" if proto else short(data))

    # ---- downlinks from the core
    def attribute_update(self, conn, payload):
        """A shared-attribute change to a subscribed session, on its subscription's topic family (§6)."""
        fam = conn.attr_family
        if self._fmt(conn, fam) == _PROTO:
            payload = protomode.attribute_update(payload)
        _, qos = conn.publish(fam.attributes, payload)
        conn.log("attribute update -> PUBLISH q%d %s %s" % (qos, fam.attributes, short(payload)))
