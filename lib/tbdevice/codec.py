# The JSON payload codec (spec §5-§9, §14): what goes in each request body and how each
# answer is read. A protobuf codec offers the same methods, so Device and the app do not
# change between the two payload types a ThingsBoard device profile can require.
import json

from tbdevice import errors
from tbdevice.jsonenc import dumps


def decode_json(payload, what):
    try:
        return json.loads(payload)
    except ValueError:  # MicroPython raises ValueError; CPython's JSONDecodeError is one
        raise errors.BadPayload(what + ": the server's answer is not JSON")


def _object(payload, what):
    d = decode_json(payload, what)
    if not isinstance(d, dict):
        raise errors.BadPayload(what + ": not a JSON object")
    return d


def telemetry_body(values, ts=None):
    """The telemetry object or array: values as given (server time), or {"ts", "values"}
    when a client timestamp in epoch milliseconds is known (spec §5)."""
    if ts is None or isinstance(values, list) or ("ts" in values and "values" in values):
        return values
    return {"ts": ts, "values": values}


class JsonCodec:
    name = "json"

    # ---- request bodies ------------------------------------------------------
    def telemetry(self, values, ts=None):
        return dumps(telemetry_body(values, ts))

    def attributes(self, attrs):
        return dumps(attrs)

    def rpc_call(self, method, params):
        return dumps({"method": method, "params": params})

    def rpc_reply(self, result):
        # The server takes only a JSON object as an RPC reply (spec §7; 5.00 otherwise).
        return dumps(result if isinstance(result, dict) else {"result": result})

    def claim(self, secret_key=None, duration_ms=None):
        body = {}
        if secret_key is not None:
            body["secretKey"] = secret_key
        if duration_ms is not None:
            body["durationMs"] = duration_ms
        return dumps(body) if body else b""  # an empty body means the defaults (spec §14)

    def provision(self, key, secret, name=None, token=None):
        body = {"provisionDeviceKey": key, "provisionDeviceSecret": secret}
        if name:
            body["deviceName"] = name
        if token:
            body["credentialsType"] = "ACCESS_TOKEN"
            body["token"] = token
        return dumps(body)

    # ---- answers ---------------------------------------------------------------
    def attribute_response(self, payload):
        """{"client": {..}, "shared": {..}}, both present; no payload means none found."""
        got = _object(payload, "attribute request") if payload else {}
        return {"client": got.get("client") or {}, "shared": got.get("shared") or {}}

    def attribute_update(self, payload):
        """A flat {key: value} with optional "deleted": [keys] (spec §6.2)."""
        return _object(payload, "attributes") if payload else {}

    def rpc_request(self, payload):
        """{"id": int, "method": str, "params": any} (spec §7)."""
        req = _object(payload, "rpc")
        if not isinstance(req.get("id"), int):
            raise errors.BadPayload("rpc: request without an integer id")
        return req

    def rpc_response(self, payload):
        return decode_json(payload, "rpc") if payload else None

    def provision_response(self, payload):
        return _object(payload, "provision")
