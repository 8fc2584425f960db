# Protocol Buffers wire format by schema, for ThingsBoard's protobuf device profiles
# (spec §11; encoding rules: https://protobuf.dev/programming-guides/encoding/).
#
# A schema is a module written by tools/protoc.py (the device never parses .proto text):
#   M = ((full_name, fields), ...)      messages; a message is referred to by its index in M
#   E = ((full_name, ((NAME, number), ...)), ...)   enums
#   field = (number, json_name, type, label, sub[, proto_name]), sorted by number;
#   type: FieldDescriptorProto.Type numbers (1 double ... 18 sint64); sub: the M index of
#   a message (or map entry) type, the E index of an enum, else None.
# Dicts use the fields' lowerCamelCase JSON names, the keys ThingsBoard stores (spec §11.1);
# the encoder also takes the .proto name. Enums decode to their names, int64 to ints.
import struct

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Wire types.
_VARINT = const(0)
_I64 = const(1)
_LEN = const(2)
_I32 = const(5)
# Field types used by name here (the rest only through the tables below).
_DOUBLE = const(1)
_FLOAT = const(2)
_INT64 = const(3)
_UINT64 = const(4)
_INT32 = const(5)
_BOOL = const(8)
_STRING = const(9)
_MESSAGE = const(11)
_BYTES = const(12)
_UINT32 = const(13)
_ENUM = const(14)
_SINT32 = const(17)
_SINT64 = const(18)
# Labels: implicit presence (proto3 plain), explicit presence, repeated, packed, map.
_IMPLICIT = const(0)
_OPTIONAL = const(1)
_REPEATED = const(2)
_MAP = const(4)
_DEPTH = const(24)  # nesting limit: a hostile message must not exhaust the stack

# Per type (index = type number): its wire type (7 = not supported: groups) and, for
# fixed-size types, its struct format.
_WIRE = b"\x07\x01\x05\x00\x00\x00\x01\x05\x00\x02\x07\x02\x02\x00\x00\x05\x01\x00\x00"
_FMT = (None, "<d", "<f", None, None, None, "<Q", "<I", None, None, None, None, None, None, None, "<i", "<q")
_M64 = (1 << 64) - 1


class ProtoError(ValueError):
    pass


class DecodeError(ProtoError):
    """Malformed input: truncated, a bad length, a wrong wire type, bad UTF-8."""


class EncodeError(ProtoError):
    """A value that does not fit the schema: an unknown key, a wrong type, out of range."""


def find(schema, name):
    """The index of the message called `name` (full name, e.g. "transport.TsKvProto")."""
    for i, m in enumerate(schema.M):
        if m[0] == name:
            return i
    raise KeyError(name)


# ---- encoding -------------------------------------------------------------------
def encode(schema, index, value):
    """The bytes (a bytearray) of dict `value` as message M[index]."""
    buf = bytearray()
    _message(schema, index, value, buf, 0)
    return buf


def _varint(buf, v):
    while v > 0x7F:
        buf.append((v & 0x7F) | 0x80)
        v >>= 7
    buf.append(v)


def _open(buf):
    # Most nested messages are short: reserve one length byte, widen it if needed.
    buf.append(0)
    return len(buf)


def _close(buf, at):
    n = len(buf) - at
    if n < 0x80:
        buf[at - 1] = n
    else:
        head = bytearray()
        _varint(head, n)
        buf[at - 1:at] = head


def _message(schema, index, d, buf, depth):
    if type(d) is not dict:
        raise EncodeError("%s: expected a dict" % schema.M[index][0])
    if depth > _DEPTH:
        raise EncodeError("nested too deep")
    used = 0
    for f in schema.M[index][1]:
        name = f[1]
        if name in d:
            v = d[name]
        elif len(f) > 5 and f[5] in d:
            v = d[f[5]]
        else:
            continue
        used += 1
        if v is not None:
            _field(schema, f, v, buf, depth)
    if used != len(d):
        for k in d:
            if not has_field(schema.M[index][1], k):
                raise EncodeError("%s has no field %s" % (schema.M[index][0], k))


def has_field(fields, key):
    for f in fields:
        if f[1] == key or (len(f) > 5 and f[5] == key):
            return True
    return False


def _field(schema, f, v, buf, depth):
    num, typ, label = f[0], f[2], f[3]
    wt = _WIRE[typ]
    if label < _REPEATED:
        if label == _IMPLICIT and _is_default(schema, f, v):
            return  # proto3: a default value of a field without presence is not sent
        _varint(buf, num << 3 | wt)
        _value(schema, f, v, buf, depth)
        return
    if label == _MAP:
        if type(v) is not dict:
            raise EncodeError("field %s: expected a dict" % f[1])
        kf, vf = schema.M[f[4]][1]
        for k, x in v.items():
            _varint(buf, num << 3 | _LEN)
            at = _open(buf)
            _varint(buf, 8 | _WIRE[kf[2]])  # map entries always carry key and value
            _value(schema, kf, k, buf, depth)
            _varint(buf, 16 | _WIRE[vf[2]])
            _value(schema, vf, x, buf, depth)
            _close(buf, at)
        return
    if type(v) is not list and type(v) is not tuple:
        raise EncodeError("field %s: expected a list" % f[1])
    if label == _REPEATED:
        for x in v:
            _varint(buf, num << 3 | wt)
            _value(schema, f, x, buf, depth)
    elif v:  # packed: one length-delimited run of the values
        _varint(buf, num << 3 | _LEN)
        at = _open(buf)
        for x in v:
            _value(schema, f, x, buf, depth)
        _close(buf, at)


def _is_default(schema, f, v):
    typ = f[2]
    if typ == _ENUM:
        return _enum_number(schema, f, v) == 0
    if typ == _DOUBLE or typ == _FLOAT:
        return v == 0 and str(float(v))[0] != "-"  # -0.0 is sent
    return not v


def _int(f, v, lo, hi):
    t = type(v)
    if t is bool:
        v = int(v)
    elif t is float and v == int(v):
        v = int(v)
    elif t is not int:
        raise EncodeError("field %s: expected an integer, got %s" % (f[1], t.__name__))
    if not lo <= v <= hi:
        raise EncodeError("field %s: %d is out of range" % (f[1], v))
    return v


def _enum_number(schema, f, v):
    if type(v) is str:
        for name, n in schema.E[f[4]][1]:
            if name == v:
                return n
        raise EncodeError("field %s: no enum value %s" % (f[1], v))
    return _int(f, v, -0x80000000, 0x7FFFFFFF)


def _value(schema, f, v, buf, depth):
    typ = f[2]
    if typ == _STRING:
        if type(v) is not str:
            raise EncodeError("field %s: expected a string, got %s" % (f[1], type(v).__name__))
        v = v.encode()
        _varint(buf, len(v))
        buf.extend(v)
    elif typ == _MESSAGE:
        at = _open(buf)
        _message(schema, f[4], v, buf, depth + 1)
        _close(buf, at)
    elif typ == _BYTES:
        if type(v) not in (bytes, bytearray, memoryview):
            raise EncodeError("field %s: expected bytes" % f[1])
        _varint(buf, len(v))
        buf.extend(v)
    elif typ == _BOOL:
        buf.append(1 if _int(f, v, 0, 1) else 0)
    elif typ == _DOUBLE or typ == _FLOAT:
        if type(v) is not float and type(v) is not int:
            raise EncodeError("field %s: expected a number, got %s" % (f[1], type(v).__name__))
        buf.extend(struct.pack(_FMT[typ], v))
    elif typ == _ENUM:
        _varint(buf, _enum_number(schema, f, v) & _M64)
    elif typ == _SINT32 or typ == _SINT64:
        n = 31 if typ == _SINT32 else 63
        v = _int(f, v, -(1 << n), (1 << n) - 1)
        _varint(buf, v << 1 if v >= 0 else (-v << 1) - 1)  # zigzag
    elif typ == _UINT32 or typ == 7:  # uint32, fixed32
        v = _int(f, v, 0, 0xFFFFFFFF)
        _fixed_or_varint(buf, typ, v)
    elif typ == _UINT64 or typ == 6:  # uint64, fixed64
        _fixed_or_varint(buf, typ, _int(f, v, 0, _M64))
    elif typ == _INT32 or typ == 15:  # int32, sfixed32
        v = _int(f, v, -0x80000000, 0x7FFFFFFF)
        _fixed_or_varint(buf, typ, v & _M64 if typ == _INT32 and v < 0 else v)
    elif typ == _INT64 or typ == 16:  # int64, sfixed64
        v = _int(f, v, -(1 << 63), (1 << 63) - 1)
        _fixed_or_varint(buf, typ, v & _M64 if typ == _INT64 and v < 0 else v)
    else:
        raise EncodeError("field %s: type %d is not supported" % (f[1], typ))


def _fixed_or_varint(buf, typ, v):
    fmt = _FMT[typ]
    if fmt is None:
        _varint(buf, v)  # a negative int32/int64 is sent as ten bytes
    else:
        buf.extend(struct.pack(fmt, v))


# ---- decoding -------------------------------------------------------------------
def decode(schema, index, data):
    """A dict from the bytes of message M[index]. Unknown fields are skipped; fields
    without presence that are absent get their defaults (as ThingsBoard prints them,
    spec §11.1), absent optional and message fields stay out. Raises DecodeError."""
    r = _Reader(schema, data)
    try:
        return r.message(index, len(r.mv), 0, None)
    except UnicodeError:
        raise DecodeError("a string field is not UTF-8")


class _Reader:
    def __init__(self, schema, data):
        self.schema = schema
        self.mv = memoryview(data)
        self.i = 0

    def varint(self, end):
        mv = self.mv
        i = self.i
        v = shift = 0
        while True:
            if i >= end:
                raise DecodeError("truncated varint")
            b = mv[i]
            i += 1
            v |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift >= 70:
                raise DecodeError("varint longer than 10 bytes")
        self.i = i
        return v & _M64 if shift >= 63 else v

    def bound(self, end):
        # A length prefix: the end of what it covers, inside the enclosing message.
        n = self.varint(end)
        if n > end - self.i:
            raise DecodeError("length %d beyond the end of the message" % n)
        return self.i + n

    def skip(self, wt, end):
        if wt == _VARINT:
            self.varint(end)
            return
        if wt == _LEN:
            self.i = self.bound(end)
            return
        if wt == _I64 or wt == _I32:
            n = 8 if wt == _I64 else 4
            if self.i + n > end:
                raise DecodeError("truncated fixed-size value")
            self.i += n
            return
        raise DecodeError("wire type %d is not supported" % wt)

    def message(self, index, end, depth, out):
        if depth > _DEPTH:
            raise DecodeError("nested too deep")
        schema = self.schema
        fields = schema.M[index][1]
        if out is None:
            out = {}
        while self.i < end:
            key = self.varint(end)
            num = key >> 3
            wt = key & 7
            f = None
            for g in fields:
                if g[0] == num:
                    f = g
                    break
            if f is None:
                if num == 0 or key >> 32:
                    raise DecodeError("bad field number")
                self.skip(wt, end)
                continue
            name, typ, label = f[1], f[2], f[3]
            want = _WIRE[typ]
            if label < _REPEATED:
                if wt != want:
                    raise DecodeError("field %s: wire type %d, expected %d" % (name, wt, want))
                if typ == _MESSAGE:
                    stop = self.bound(end)
                    out[name] = self.message(f[4], stop, depth + 1, out.get(name))  # repeats merge
                else:
                    out[name] = self.value(f, end, depth)
            elif label == _MAP:
                if wt != _LEN:
                    raise DecodeError("field %s: wire type %d, expected 2" % (name, wt))
                stop = self.bound(end)
                e = self.message(f[4], stop, depth + 1, None)
                d = out.get(name)
                if d is None:
                    d = out[name] = {}
                v = e.get("value")
                d[e["key"]] = {} if v is None else v  # an absent message value is an empty one
            else:
                lst = out.get(name)
                if lst is None:
                    lst = out[name] = []
                if wt == want:
                    lst.append(self.value(f, end, depth))
                elif wt == _LEN and want != _LEN:  # packed, whatever the schema says
                    stop = self.bound(end)
                    while self.i < stop:
                        lst.append(self.value(f, stop, depth))
                else:
                    raise DecodeError("field %s: wire type %d, expected %d" % (name, wt, want))
        if self.i != end:
            raise DecodeError("a value runs past the end of its message")
        for f in fields:
            if f[1] not in out:
                label = f[3]
                if label == _IMPLICIT:
                    out[f[1]] = self.default(f)
                elif label == _MAP:
                    out[f[1]] = {}
                elif label != _OPTIONAL:
                    out[f[1]] = []
        return out

    def default(self, f):
        typ = f[2]
        if typ == _STRING:
            return ""
        if typ == _BYTES:
            return b""
        if typ == _BOOL:
            return False
        if typ == _DOUBLE or typ == _FLOAT:
            return 0.0
        if typ == _ENUM:
            return self.enum_name(f, 0)
        return 0

    def enum_name(self, f, n):
        for name, v in self.schema.E[f[4]][1]:
            if v == n:
                return name
        return n  # an unknown value stays a number (as JsonFormat prints it)

    def value(self, f, end, depth):
        typ = f[2]
        wt = _WIRE[typ]
        if wt == _VARINT:
            v = self.varint(end)
            if typ == _BOOL:
                return v != 0
            if typ == _INT64:
                return v - (1 << 64) if v >> 63 else v
            if typ == _UINT64:
                return v
            if typ == _SINT64:
                return (v >> 1) ^ -(v & 1)
            v &= 0xFFFFFFFF  # 32-bit types keep the low 32 bits
            if typ == _UINT32:
                return v
            if typ == _SINT32:
                return (v >> 1) ^ -(v & 1)
            v = v - 0x100000000 if v >> 31 else v  # int32, enum
            return self.enum_name(f, v) if typ == _ENUM else v
        if wt == _LEN:
            stop = self.bound(end)
            start = self.i
            self.i = stop
            if typ == _STRING:
                return str(self.mv[start:stop], "utf-8")
            if typ == _BYTES:
                return bytes(self.mv[start:stop])
            self.i = start
            return self.message(f[4], stop, depth + 1, None)
        n = 8 if wt == _I64 else 4
        if self.i + n > end:
            raise DecodeError("field %s: truncated fixed-size value" % f[1])
        v = struct.unpack_from(_FMT[typ], self.mv, self.i)[0]
        self.i += n
        return v
