# The device's protobuf wire codec (lib/tbdevice/protobuf.py): byte-exact vectors (the
# bytes Google's protobuf writes), decoding back, unknown fields, packed/unpacked, and
# malformed input that must raise DecodeError and nothing else. Shared: pytest and the
# unix port (tests/mpy_unit.py).
from binascii import unhexlify

import schema_alltypes as S
from proto_vectors import VECTORS
from tbdevice import protobuf as pb
from tbdevice import tbschema as TB

ALL = pb.find(S, "t.All")
INNER = pb.find(S, "t.Inner")


def _schema(name):
    return S if name[:2] in ("t.", "t2") else TB


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return str(e)
    raise AssertionError("%s not raised" % exc.__name__)


def _subset(want, got):
    # The decoded dict also holds defaults for fields without presence.
    if type(want) is dict:
        assert type(got) is dict, (want, got)
        for k in want:
            assert k in got, (k, got)
            _subset(want[k], got[k])
    elif type(want) is list:
        assert type(got) is list and len(got) == len(want), (want, got)
        for a, b in zip(want, got):
            _subset(a, b)
    else:
        assert got == want, (want, got)


def test_vectors_encode_byte_exact():
    for name, value, hexed in VECTORS:
        s = _schema(name)
        got = bytes(pb.encode(s, pb.find(s, name), value))
        assert got == unhexlify(hexed), (name, value)


def test_vectors_decode_back():
    for name, value, hexed in VECTORS:
        s = _schema(name)
        got = pb.decode(s, pb.find(s, name), unhexlify(hexed))
        _subset(value, got)


def test_defaults_filled_as_thingsboard_prints_them():
    d = pb.decode(S, ALL, b"")
    assert d["fInt32"] == 0 and d["fString"] == "" and d["fBool"] is False and d["fEnum"] == "RED"
    assert d["fDouble"] == 0.0 and d["fBytes"] == b"" and d["packedInt32"] == [] and d["mStrInt"] == {}
    # explicit presence (optional, message, oneof) stays out when absent
    for k in ("oInt32", "oString", "inner", "cText", "cNum"):
        assert k not in d, k


def test_proto_names_accepted_on_encode():
    assert bytes(pb.encode(S, ALL, {"f_int32": 1, "json_named": "j"})) == unhexlify("28018a02016a")


def test_unknown_fields_skipped():
    # field 99 of every wire type, then fInt32 = 1
    data = unhexlify("98060a" + "99060102030405060708" + "9a0602abcd" + "9d0601020304" + "2801")
    assert pb.decode(S, ALL, data)["fInt32"] == 1


def test_packed_and_unpacked_both_accepted():
    packed = unhexlify("b80103b8018e02")  # unpackedInt32 sent unpacked
    as_packed = unhexlify("ba0103038e02")  # the same field sent packed
    assert pb.decode(S, ALL, packed)["unpackedInt32"] == [3, 270]
    assert pb.decode(S, ALL, as_packed)["unpackedInt32"] == [3, 270]
    assert pb.decode(S, ALL, unhexlify("b00101b00102"))["packedInt32"] == [1, 2]


def test_repeated_message_field_merges_and_unknown_enum_kept():
    d = pb.decode(S, ALL, unhexlify("9a0102080a" + "9a0103120161" + "7007"))
    assert d["inner"]["a"] == 10 and d["inner"]["s"] == "a"
    assert d["fEnum"] == 7


def test_int32_keeps_low_bits_and_overlong_varint():
    # int32 sent as a 64-bit varint of 2**32 + 5: Google keeps the low 32 bits
    assert pb.decode(S, ALL, unhexlify("2885808080 10".replace(" ", "")))["fInt32"] == 5
    # ten-byte varint whose last byte carries bits above 64: truncated to 64 bits
    assert pb.decode(S, ALL, unhexlify("18ffffffffffffffffff7f"))["fInt64"] == -1


def test_malformed_input_raises_decode_error():
    bad = (
        "28",                    # truncated varint (tag only)
        "2880",                  # truncated varint value
        "28ffffffffffffffffffff01",  # varint longer than 10 bytes
        "4a05616263",            # length beyond the end
        "4a",                    # length missing
        "09000000",              # truncated double
        "1d0000",                # truncated fixed32 (unknown field 3, wire type 5)
        "2a0101",                # fInt32 (varint) sent length-delimited
        "4801",                  # fString (LEN) sent as varint
        "0b",                    # group start: not supported
        "0f",                    # wire type 7
        "00",                    # field number 0
        "4a02c328",              # invalid UTF-8
        "9a01050801",            # nested length beyond its parent
        "b20103ffff",            # packed run with a truncated varint
        "9a0102" + "1a00",       # not malformed: an empty kid inside inner
    )
    for h in bad[:-1]:
        _raises(pb.DecodeError, pb.decode, S, ALL, unhexlify(h))
    assert pb.decode(S, ALL, unhexlify(bad[-1]))["inner"]["kids"] == [{"a": 0, "s": "", "kids": []}]


def test_deep_nesting_refused():
    data = b""
    for _ in range(40):
        data = b"\x1a" + bytes([len(data)]) + data if len(data) < 128 else data
    _raises(pb.DecodeError, pb.decode, S, INNER, data)


def test_encode_errors_are_clear():
    assert "nope" in _raises(pb.EncodeError, pb.encode, S, ALL, {"nope": 1})
    assert "fInt32" in _raises(pb.EncodeError, pb.encode, S, ALL, {"fInt32": "1"})
    assert "range" in _raises(pb.EncodeError, pb.encode, S, ALL, {"fInt32": 2 ** 31})
    assert "range" in _raises(pb.EncodeError, pb.encode, S, ALL, {"fUint32": -1})
    _raises(pb.EncodeError, pb.encode, S, ALL, {"fEnum": "PURPLE"})
    _raises(pb.EncodeError, pb.encode, S, ALL, {"fString": 5})
    _raises(pb.EncodeError, pb.encode, S, ALL, {"packedInt32": 5})
    _raises(pb.EncodeError, pb.encode, S, ALL, {"inner": [1]})
    _raises(pb.EncodeError, pb.encode, S, ALL, {"fDouble": "x"})


def test_none_means_absent_and_integral_float_accepted():
    assert bytes(pb.encode(S, ALL, {"oInt32": None, "fInt32": 3.0})) == unhexlify("2803")
