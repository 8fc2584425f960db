"""Protobuf mode of a COAP device profile (spec §11): which devices use it, and every conversion the CoAP transport
makes (ProtoCoapAdaptor, ProtoConverter, DynamicProtoUtils). The routes call these and keep ThingsBoard's codes.

- Device -> server, by the profile's schemas: telemetry, client attributes and RPC replies are parsed with the last
  top-level message and printed to JSON (defaults included), then go through the JSON rules of spec §5.
- Server -> device: the RPC request as JSON merged into the profile's RPC request message (§11.3); attribute
  answers and updates, client-side RPC answers and provisioning answers as ThingsBoard's built-in messages (§11.2).
"""

import json

from google.protobuf.message import DecodeError

from . import jsontypes
from .protoschema import ConvertError, SchemaError, builtin, default_schema, merge_json, profile_message, to_json  # noqa: F401

CONTENT_FORMAT = 42  # application/octet-stream: ProtoCoapAdaptor.getContentFormat (spec §4)
_SCHEMAS = (("telemetry", "deviceTelemetryProtoSchema"), ("attributes", "deviceAttributesProtoSchema"),
            ("rpc_request", "deviceRpcRequestProtoSchema"), ("rpc_response", "deviceRpcResponseProtoSchema"))
_KV_FIELD = {jsontypes.BOOLEAN: ("BOOLEAN_V", "bool_v"), jsontypes.LONG: ("LONG_V", "long_v"),
             jsontypes.DOUBLE: ("DOUBLE_V", "double_v"), jsontypes.STRING: ("STRING_V", "string_v"),
             jsontypes.JSON: ("JSON_V", "json_v")}


class BadPayload(ValueError):
    """Bytes that do not parse with the schema (CoAP 4.00)."""


class ProtoProfile:
    """The four message classes of one profile's transportPayloadTypeConfiguration."""

    def __init__(self, payload_cfg):
        texts = {}
        for role, key in _SCHEMAS:
            text = payload_cfg.get(key)
            texts[role] = text if isinstance(text, str) and text.strip() else default_schema(role)
        self.telemetry = profile_message(texts["telemetry"])
        self.attributes = profile_message(texts["attributes"])
        self.rpc_request = profile_message(texts["rpc_request"])
        self.rpc_response = profile_message(texts["rpc_response"])


def payload_config(transport_cfg):
    """transportPayloadTypeConfiguration of a stored COAP or MQTT transport configuration, or None."""
    if not isinstance(transport_cfg, dict):
        return None
    if transport_cfg.get("type") == "MQTT":  # an MQTT profile keeps it at the top level
        return transport_cfg.get("transportPayloadTypeConfiguration")
    dtc = transport_cfg.get("coapDeviceTypeConfiguration") or {}
    return dtc.get("transportPayloadTypeConfiguration")


def validate(transport_cfg):
    """Refuse (SchemaError) a PROTOBUF profile whose schemas do not compile, as ThingsBoard's profile
    validation does; a JSON one passes."""
    cfg = payload_config(transport_cfg)
    if cfg is None or cfg.get("transportPayloadType", "JSON") == "JSON":
        return
    if cfg.get("transportPayloadType") != "PROTOBUF":
        raise SchemaError("transportPayloadType must be JSON or PROTOBUF")
    ProtoProfile(cfg)


def for_device(store, device):
    """The device's ProtoProfile when its profile's payload type is PROTOBUF, else None (JSON)."""
    profile = store.profile(device["profile_id"])
    text = profile.get("transport_config") if profile else None
    cfg = payload_config(json.loads(text)) if text else None
    if cfg is None or cfg.get("transportPayloadType") != "PROTOBUF":
        return None
    return ProtoProfile(cfg)


def _parse(cls, payload):
    try:
        return cls.FromString(bytes(payload))
    except DecodeError as exc:
        raise BadPayload(str(exc)) from exc


# ---- device -> server ---------------------------------------------------------------------------------
def uplink_json(cls, payload):
    """Telemetry, attributes or an RPC reply: the JSON text ThingsBoard makes of the bytes (spec §11.1)."""
    return to_json(_parse(cls, payload))


def client_rpc(payload):
    """transportapi.RpcRequest -> (method, params); params is JSON text parsed by the server (spec §11.4)."""
    msg = _parse(builtin("transportapi.RpcRequest"), payload)
    params = jsontypes.loads(msg.params) if msg.params.strip() else None
    return msg.method, params


def claim(payload):
    """transportapi.ClaimDevice -> (secretKey, durationMs); empty bytes are the defaults (spec §14)."""
    msg = _parse(builtin("transportapi.ClaimDevice"), payload)
    return msg.secretKey, msg.durationMs


def provision_request(payload):
    """ProvisionDeviceRequestMsg -> the JSON request's fields (spec §9), for the same provisioning logic."""
    msg = _parse(builtin("transport.ProvisionDeviceRequestMsg"), payload)
    cred = msg.credentialsDataProto
    obj = {"provisionDeviceKey": msg.provisionDeviceCredentialsMsg.provisionDeviceKey,
           "provisionDeviceSecret": msg.provisionDeviceCredentialsMsg.provisionDeviceSecret,
           "credentialsType": msg.DESCRIPTOR.fields_by_name["credentialsType"].enum_type.values_by_number[
               msg.credentialsType].name, "gateway": msg.gateway}
    if msg.deviceName:
        obj["deviceName"] = msg.deviceName
    for key, value in (("token", cred.validateDeviceTokenRequestMsg.token),
                       ("hash", cred.validateDeviceX509CertRequestMsg.hash),
                       ("clientId", cred.validateBasicMqttCredRequestMsg.clientId),
                       ("username", cred.validateBasicMqttCredRequestMsg.userName),
                       ("password", cred.validateBasicMqttCredRequestMsg.password)):
        if value:
            obj[key] = value
    return obj


# ---- server -> device ---------------------------------------------------------------------------------
def rpc_request(pp, rec):
    """The RPC as the profile's RPC request message (spec §11.3); ConvertError when it does not fit."""
    params = jsontypes.to_python(jsontypes.JSON, rec["params"])
    obj = {"method": rec["method"], "requestId": rec["seq"], "params": params}
    return merge_json(obj, pp.rpc_request).SerializeToString()


def _fill(lst, rows):
    # Attribute rows (key, vtype, v[, last_update_ts]) -> repeated TsKvProto.
    for r in rows:
        t = lst.add()
        t.ts = r.get("last_update_ts") or 0
        name, field = _KV_FIELD[r["vtype"]]
        t.kv.key = r["key"]
        t.kv.type = t.kv.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_name[name].number
        v = r["v"] if r["vtype"] in (jsontypes.STRING, jsontypes.JSON) else jsontypes.to_python(r["vtype"], r["v"])
        setattr(t.kv, field, v)


def attribute_response(client_rows, shared_rows):
    """GetAttributeResponseMsg of the attribute rows (spec §6.1)."""
    msg = builtin("transport.GetAttributeResponseMsg")()
    _fill(msg.clientAttributeList, client_rows)
    _fill(msg.sharedAttributeList, shared_rows)
    return msg.SerializeToString()


def attribute_update(json_payload):
    """The flat JSON update (with optional "deleted") the core pushes, as AttributeUpdateNotificationMsg; the typed
    values come back from the JSON text the core wrote (strings stay strings). Empty bytes when nothing (§6.2)."""
    obj = jsontypes.loads(json_payload)
    msg = builtin("transport.AttributeUpdateNotificationMsg")()
    rows = []
    for key, value in obj.items():
        if key == "deleted" and isinstance(value, list):
            msg.sharedDeleted.extend(str(k) for k in value)
            continue
        if isinstance(value, jsontypes.RawNumber):
            vtype, text = jsontypes.numeric(str(value))
        elif isinstance(value, str):
            vtype, text = jsontypes.STRING, value
        else:
            typed = jsontypes.type_value(value)
            if typed is None:
                continue
            vtype, text = typed
        rows.append({"key": key, "vtype": vtype, "v": text})
    _fill(msg.sharedUpdated, rows)
    return msg.SerializeToString()


def client_rpc_response(text):
    """The rule chain's reply JSON as ToServerRpcResponseMsg (spec §8)."""
    return builtin("transport.ToServerRpcResponseMsg")(requestId=0, payload=text).SerializeToString()


def provision_response(body):
    """The JSON provisioning answer's fields as ProvisionDeviceResponseMsg (spec §9)."""
    kw = {"status": body["status"]}
    if "credentialsType" in body:
        kw["credentialsType"] = body["credentialsType"]
    msg = builtin("transport.ProvisionDeviceResponseMsg")(**kw)
    value = body.get("credentialsValue")
    if value is not None:
        msg.credentialsValue = value if isinstance(value, str) else jsontypes.dumps(value)
    return msg.SerializeToString()



def ensure_profile(store, name, schemas=None):
    """A COAP device profile `name` with payload type PROTOBUF and the given schema texts ({role: text}; the
    defaults of spec §11.1 for roles not given), as REST would store it. Returns the profile row."""
    from .power import profile_transport

    payload = {"transportPayloadType": "PROTOBUF"}
    for role, key in _SCHEMAS:
        payload[key] = (schemas or {}).get(role) or default_schema(role)
    cfg = profile_transport({"type": "COAP", "coapDeviceTypeConfiguration": {
        "coapDeviceType": "DEFAULT", "transportPayloadTypeConfiguration": payload}})
    validate(cfg)
    profile = store.profile_by_name(name) or store.add_profile(name)
    store.set_transport_config("profiles", profile["id"], json.dumps(cfg))
    return store.profile(profile["id"])
