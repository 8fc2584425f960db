# The JSON payload codec (spec §5-§9, §14): what goes in each request body and how each
# answer is read. A protobuf codec offers the same methods, so Device and the app do not
# change between the two payload types a ThingsBoard device profile can require.
import json

from tbdevice import errors
from tbdevice.jsonenc import SEP, dump, dumps, plain


# What the device parses from the network is bounded before parsing (issue 8): the
# parsed objects cost up to ~10x the text on a board's heap, so a large or deeply nested
# answer would exhaust it. Tunables: raise them for a device with big attribute sets.
MAX_BYTES = 4096  # JSON text or protobuf message taken from one answer or notification
MAX_CONTAINERS = 64  # objects and arrays (so also the nesting depth)
MAX_ITEMS = 512  # elements: commas, a bound on members + array items


def check_size(payload, what):
    if len(payload) > MAX_BYTES:
        raise errors.BadPayload("%s: %d bytes, more than the %d the device parses" % (what, len(payload), MAX_BYTES))


def decode_json(payload, what):
    """json.loads within the bounds above; anything else is errors.BadPayload."""
    check_size(payload, what)
    if type(payload) is str:
        o, a, c = "{", "[", ","
    else:
        o, a, c = b"{", b"[", b","
    # Counted in C (bytes.count), no Python loop per byte. Characters inside strings count
    # too, which errs on the safe side.
    if payload.count(o) + payload.count(a) > MAX_CONTAINERS or payload.count(c) > MAX_ITEMS:
        raise errors.BadPayload(what + ": JSON nested or split beyond the device's bounds")
    try:
        return json.loads(payload)
    except ValueError:  # MicroPython raises ValueError; CPython's JSONDecodeError is one
        raise errors.BadPayload(what + ": the server's answer is not JSON")
    except (MemoryError, RuntimeError):  # RuntimeError: recursion depth; what the bounds did not foresee: an error, not a crash
        raise errors.BadPayload(what + ": JSON too large to parse")


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


def claim_fields(secret_key=None, duration_ms=None):
    """The claiming info (spec §14), both fields optional; {} means the server's defaults."""
    body = {}
    if secret_key is not None:
        body["secretKey"] = secret_key
    if duration_ms is not None:
        body["durationMs"] = duration_ms
    return body


class JsonCodec:
    name = "json"

    # ---- request bodies ------------------------------------------------------
    def telemetry(self, values, ts=None):
        return dumps(telemetry_body(values, ts))

    def attributes(self, attrs):
        return dumps(attrs)

    # The same two bodies written to a stream (the CoAP client's send buffer), so that no
    # payload object is made per message.
    def write_telemetry(self, stream, values, ts=None):
        # jsonenc.dump() written out: this is the per-message path, where a call costs
        # about what json.dump takes to format one float on MicroPython.
        if ts is not None:
            values = telemetry_body(values, ts)
        if plain(values):
            json.dump(values, stream, separators=SEP)
        else:
            stream.write(dumps(values))

    def write_attributes(self, stream, attrs):
        dump(attrs, stream)

    def rpc_call(self, method, params):
        return dumps({"method": method, "params": params})

    def rpc_reply(self, result):
        # The server takes only a JSON object as an RPC reply (spec §7; 5.00 otherwise).
        return dumps(result if isinstance(result, dict) else {"result": result})

    def claim(self, secret_key=None, duration_ms=None):
        body = claim_fields(secret_key, duration_ms)
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
