"""ThingsBoard's JSON value typing (spec §5, JsonConverter.parseProtoValues / buildNumericKeyValueProto).

Values are kept as (vtype, text) pairs: vtype is one of BOOLEAN, LONG, DOUBLE, STRING, JSON and text is a
canonical string form that survives SQLite unchanged. Numbers are parsed from their literal text (never through
a float), because the typing rules look at the literal: scale, '.', exponent.
"""

import json
import re
from decimal import Decimal, InvalidOperation

BOOLEAN = "BOOLEAN"
LONG = "LONG"
DOUBLE = "DOUBLE"
STRING = "STRING"
JSON = "JSON"

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1


class BadPayload(ValueError):
    """The payload is not acceptable JSON for this route (CoAP 4.00, spec §2.3)."""


class RawNumber(str):
    """A JSON number kept as its literal text (Gson's LazilyParsedNumber)."""


def _reject_constant(name):
    raise BadPayload("non-standard JSON constant " + name)


def loads(data):
    """Parse JSON bytes/str keeping numbers as RawNumber. Raises BadPayload."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadPayload("payload is not UTF-8") from exc
    if not data.strip():
        raise BadPayload("empty payload")
    try:
        return json.loads(data, parse_int=RawNumber, parse_float=RawNumber, parse_constant=_reject_constant)
    except ValueError as exc:
        raise BadPayload(str(exc)) from exc


def dumps(value):
    """Compact JSON like Gson's toString, keeping RawNumber literals as they were written."""
    if isinstance(value, RawNumber):
        return str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    raise TypeError("cannot encode %r" % (value,))


def _stripped_scale(d):
    """BigDecimal.stripTrailingZeros().scale() for a finite Decimal."""
    sign, digits, exp = d.as_tuple()
    digits = list(digits)
    if not any(digits):
        return 0  # BigDecimal.ZERO after stripping has scale 0
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exp += 1
    return -exp


def _plain(d):
    """BigDecimal.toPlainString()."""
    return format(d, "f")


def numeric(text):
    """Type a number literal (or a parsable numeric string): buildNumericKeyValueProto, spec §5."""
    try:
        d = Decimal(text)
    except InvalidOperation as exc:
        raise BadPayload("bad number " + text) from exc
    if not d.is_finite():
        raise BadPayload("bad number " + text)
    simple_double = "." in text and "e" not in text and "E" not in text
    if _stripped_scale(d) <= 0 and not simple_double:
        n = int(d)
        if _LONG_MIN <= n <= _LONG_MAX:
            return LONG, str(n)
        return STRING, _plain(d)  # out of long range, type cast on
    if -d.as_tuple().exponent <= 16:  # BigDecimal.scale() of the literal, not stripped
        return DOUBLE, repr(float(d))
    return STRING, _plain(d)


_PARSABLE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)\Z")


def is_parsable(s):
    """Apache commons NumberUtils.isParsable: optional '-', digits, at most one '.', not ending in '.'."""
    return bool(_PARSABLE.match(s)) and not s.endswith(".")


def type_value(value):
    """One JSON value -> (vtype, text), or None for null (skipped, spec §5)."""
    if value is None:
        return None
    if value is True or value is False:
        return BOOLEAN, "true" if value else "false"
    if isinstance(value, RawNumber):
        return numeric(str(value))
    if isinstance(value, str):
        if is_parsable(value):  # transport.json.type_cast_enabled = true
            try:
                return numeric(value)
            except BadPayload:
                return STRING, value
        return STRING, value
    if isinstance(value, (dict, list)):
        return JSON, dumps(value)
    raise BadPayload("unsupported value %r" % (value,))


def type_object(obj):
    """A JSON object -> list of (key, vtype, text); nulls skipped."""
    out = []
    for key, value in obj.items():
        typed = type_value(value)
        if typed is not None:
            out.append((key, typed[0], typed[1]))
    return out


def parse_attributes(payload):
    """Attributes payload: must be a JSON object (spec §5)."""
    obj = loads(payload)
    if not isinstance(obj, dict):
        raise BadPayload("attributes must be a JSON object")
    return type_object(obj)


def _ts_of(value):
    if isinstance(value, RawNumber) or (isinstance(value, str) and value.strip()):
        try:
            d = Decimal(str(value))
        except InvalidOperation as exc:
            raise BadPayload("bad ts") from exc
        if d.is_finite() and d == d.to_integral_value():
            return int(d)
    raise BadPayload("bad ts")


def _telemetry_entry(obj, now_ms):
    if not isinstance(obj, dict):
        raise BadPayload("telemetry element must be an object")
    if "ts" in obj and "values" in obj:
        values = obj["values"]
        if not isinstance(values, dict):
            raise BadPayload("values must be an object")
        return _ts_of(obj["ts"]), type_object(values)
    return now_ms, type_object(obj)


def parse_telemetry(payload, now_ms):
    """Telemetry payload -> list of (ts, [(key, vtype, text), ...]) (spec §5)."""
    data = loads(payload)
    if isinstance(data, list):
        return [_telemetry_entry(item, now_ms) for item in data]
    return [_telemetry_entry(data, now_ms)]


def java_double(f):
    """Double.toString: plain form for 1e-3 <= |f| < 1e7, else d.dddE[-]n (shortest digits)."""
    if f != f or f in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[repr(f)]
    if f == 0.0:
        return "-0.0" if str(f).startswith("-") else "0.0"
    a = abs(f)
    sign = "-" if f < 0 else ""
    if 1e-3 <= a < 1e7:
        s = repr(a)
        if "e" in s:  # repr may use exponent for e.g. 1e-03 boundary cases
            s = format(Decimal(s), "f")
        if "." not in s:
            s += ".0"
        return sign + s
    digits, exp = _shortest_digits(a)
    mant = digits[0] + "." + (digits[1:] or "0")
    return sign + mant + "E" + str(exp)


def _shortest_digits(a):
    """Shortest round-trip digits of a positive float and the exponent of the first digit."""
    s = "%r" % a
    d = Decimal(s)
    sign, digits, exp = d.as_tuple()
    ds = "".join(str(x) for x in digits).rstrip("0") or "0"
    point = len(digits) + exp  # position of the decimal point relative to the digit string
    return ds, point - 1


def to_python(vtype, text):
    """Stored value -> Python value for JSON output (Gson types, spec §5 'Output JSON')."""
    if vtype == BOOLEAN:
        return text == "true"
    if vtype == LONG:
        return int(text)
    if vtype == DOUBLE:
        return float(text)
    if vtype == JSON:
        return json.loads(text, parse_int=RawNumber, parse_float=RawNumber)
    return text


def to_string(vtype, text):
    """KvEntry.getValueAsString (REST without useStrictDataTypes)."""
    if vtype == DOUBLE:
        return java_double(float(text))
    return text
