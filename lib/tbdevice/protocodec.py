# The protobuf payload codec (spec §11) with the methods of codec.JsonCodec, so Device,
# Downlink, provision() and the app do not change with the profile's payload type.
# Telemetry, client attributes and the server-side RPC request and reply use the device
# profile's schemas (a module compiled by tools/protoc.py); attribute answers and updates,
# client-side RPC, claim and provisioning use ThingsBoard's built-in messages (tbschema), and
# so does the attribute request over MQTT (wire-mqtt §5, §12.2), which CoAP puts in the URI.
from tbdevice import errors
from tbdevice import protobuf as pb
from tbdevice import tbschema as tb
from tbdevice.codec import check_size, claim_fields, decode_json
from tbdevice.jsonenc import dumps

# KeyValueProto: which field holds the value of each KeyValueType (spec §11.4).
_KV = {"BOOLEAN_V": "boolV", "LONG_V": "longV", "DOUBLE_V": "doubleV", "STRING_V": "stringV", "JSON_V": "jsonV"}


def load_profile(name):
    """The compiled profile module called `name` (dotted names allowed)."""
    mod = __import__(name)
    for part in name.split(".")[1:]:
        mod = getattr(mod, part)
    for role in ("M", "E", "TELEMETRY", "ATTRIBUTES", "RPC_REQUEST", "RPC_RESPONSE"):
        if not hasattr(mod, role):
            raise ValueError("%s is not a profile schema module (no %s): compile it with tools/protoc.py" % (name, role))
    return mod


def _encode(schema, index, value, what):
    try:
        return pb.encode(schema, index, value)
    except pb.EncodeError as e:
        # A value no payload type carries (an object; bytes outside a bytes field) is the
        # caller's ValueError, naming its key, as with the JSON codec; only a value that
        # JSON could carry but the schema cannot is a SchemaMismatch. Checked only after a
        # failure: nothing is added to an encoding that succeeds.
        from tbdevice.jsoncheck import check

        check(value)
        raise errors.SchemaMismatch("%s: %s" % (what, e))


def _decode(schema, index, payload, what):
    check_size(payload, what)
    try:
        return pb.decode(schema, index, payload)
    except pb.DecodeError as e:
        raise errors.BadPayload("%s: %s" % (what, e))


def _json(text, what):
    return decode_json(text, what)


def _kv_dict(entries):
    # [TsKvProto] -> {key: value}, each value from the field its type names.
    out = {}
    for t in entries:
        kv = t.get("kv") or {}
        field = _KV.get(kv.get("type"))
        if field is None:
            raise errors.BadPayload("attributes: unknown value type %s" % kv.get("type"))
        v = kv.get(field)
        out[kv.get("key")] = _json(v, "attributes") if field == "jsonV" else v
    return out


class ProtoCodec:
    name = "protobuf"

    def __init__(self, profile=None):
        """profile: a compiled profile module, its name, or None for the defaults of spec
        §11.1 (tbdevice.defaultprofile)."""
        if profile is None:
            from tbdevice import defaultprofile as profile
        elif type(profile) is str:
            profile = load_profile(profile)
        self.profile = profile
        self._attr_response = pb.find(tb, "transport.GetAttributeResponseMsg")
        self._attr_update = pb.find(tb, "transport.AttributeUpdateNotificationMsg")
        self._attr_request = pb.find(tb, "transportapi.AttributesRequest")
        self._rpc_call = pb.find(tb, "transportapi.RpcRequest")
        self._rpc_response = pb.find(tb, "transport.ToServerRpcResponseMsg")
        self._claim = pb.find(tb, "transportapi.ClaimDevice")
        self._prov_request = pb.find(tb, "transport.ProvisionDeviceRequestMsg")
        self._prov_response = pb.find(tb, "transport.ProvisionDeviceResponseMsg")

    # ---- request bodies ------------------------------------------------------
    def telemetry(self, values, ts=None):
        p = self.profile
        if type(values) is not dict:
            raise errors.SchemaMismatch("telemetry: protobuf carries one object per message")
        fields = p.M[p.TELEMETRY][1]
        # A schema with ts and values fields is timestamped telemetry (spec §11.1); any
        # other schema is stored with server time.
        if (ts is not None and not ("ts" in values and "values" in values) and pb.has_field(fields, "ts")
                and pb.has_field(fields, "values")):
            values = {"ts": ts, "values": values}
        return _encode(p, p.TELEMETRY, values, "telemetry")

    def attributes(self, attrs):
        return _encode(self.profile, self.profile.ATTRIBUTES, attrs, "attributes")

    def write_telemetry(self, stream, values, ts=None):
        stream.write(self.telemetry(values, ts))

    def write_attributes(self, stream, attrs):
        stream.write(self.attributes(attrs))

    def rpc_call(self, method, params):
        # transportapi.RpcRequest: the server parses params as JSON text (spec §11.4).
        return _encode(tb, self._rpc_call, {"method": method, "params": dumps(params)}, "rpc")

    def rpc_reply(self, result):
        p = self.profile
        i = p.RPC_RESPONSE
        if type(result) is not dict:
            result = {"result": result}
        try:
            return pb.encode(p, i, result)  # a schema made for this reply
        except pb.EncodeError:
            pass
        # Otherwise the reply's JSON text in the schema's first string field: the default
        # schema's `payload` (spec §11.1: the result is then {"payload": "<text>"}).
        for f in p.M[i][1]:
            if f[2] == 9 and f[3] < 2:
                return pb.encode(p, i, {f[1]: dumps(result)})
        raise errors.SchemaMismatch("rpc reply: %s fits neither the schema nor a string field" % list(result))

    def attributes_request(self, keys):
        """transportapi.AttributesRequest of {"clientKeys": "a,b", "sharedKeys": "c"} (MQTT,
        wire-mqtt §5); {} (empty bytes) asks for every attribute."""
        return _encode(tb, self._attr_request, keys, "attribute request")

    def claim(self, secret_key=None, duration_ms=None):
        return _encode(tb, self._claim, claim_fields(secret_key, duration_ms), "claim")  # empty: the defaults (spec §14)

    def provision(self, key, secret, name=None, token=None):
        body = {"provisionDeviceCredentialsMsg": {"provisionDeviceKey": key, "provisionDeviceSecret": secret}}
        if name:
            body["deviceName"] = name
        if token:
            body["credentialsType"] = "ACCESS_TOKEN"
            body["credentialsDataProto"] = {"validateDeviceTokenRequestMsg": {"token": token}}
        return _encode(tb, self._prov_request, body, "provision")

    # ---- answers ---------------------------------------------------------------
    def attribute_response(self, payload):
        """{"client": {..}, "shared": {..}} from a GetAttributeResponseMsg (spec §6.1)."""
        if not payload:
            return {"client": {}, "shared": {}}
        r = _decode(tb, self._attr_response, payload, "attribute request")
        if r["error"]:
            raise errors.BadPayload("attribute request: " + r["error"])
        return {"client": _kv_dict(r["clientAttributeList"]), "shared": _kv_dict(r["sharedAttributeList"])}

    def attribute_update(self, payload):
        """A flat {key: value} with optional "deleted": [keys] from an
        AttributeUpdateNotificationMsg; empty bytes: no shared attributes (spec §6.2). A dict is
        that already: the state MQTT reads with an attribute request (tbdevice/mqttdown.py)."""
        if not payload:
            return {}
        if type(payload) is dict:
            return payload
        u = _decode(tb, self._attr_update, payload, "attributes")
        out = _kv_dict(u["sharedUpdated"])
        if u["sharedDeleted"]:
            out["deleted"] = u["sharedDeleted"]
        return out

    def rpc_request(self, payload):
        """{"id", "method", "params"} from the profile's RPC request schema (spec §11.3).
        payload: its bytes, or (id, bytes) over MQTT, where the topic holds the id (wire-mqtt §7):
        that id holds whatever the schema's requestId says, or when it has none."""
        p = self.profile
        topic_id = None
        if type(payload) is tuple:
            topic_id, payload = payload
        d = _decode(p, p.RPC_REQUEST, payload, "rpc")
        rid = d.get("requestId") if topic_id is None else topic_id
        if type(rid) is not int:
            raise errors.BadPayload("rpc: request without an integer requestId")
        params = d.get("params")
        if type(params) is str and params[:1] in ("{", "["):
            # The default schema carries params as a string: JSON text sent as a string.
            try:
                params = decode_json(params, "rpc")
            except errors.BadPayload:
                pass
        return {"id": rid, "method": d.get("method"), "params": params}

    def rpc_response(self, payload):
        """The rule chain's reply from a ToServerRpcResponseMsg (spec §8)."""
        if not payload:
            return None
        r = _decode(tb, self._rpc_response, payload, "rpc")
        if r["error"] == "timeout":
            # The server's own client-RPC timeout (wire-mqtt §8; never sent over CoAP): a Timeout,
            # as the JSON {"error":"timeout"} is over MQTT.
            raise errors.Timeout("rpc: the server's client-side RPC timeout")
        if r["error"]:
            return {"error": r["error"]}
        return _json(r["payload"], "rpc") if r["payload"] else None

    def provision_response(self, payload):
        """{"status", "credentialsType", "credentialsValue"} (spec §9)."""
        return _decode(tb, self._prov_response, payload, "provision")
