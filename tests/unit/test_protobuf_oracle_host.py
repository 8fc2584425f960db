"""The device's protobuf codec and schema compiler against Google's protobuf (the oracle, CPython only):
protoc's descriptors, Google's serializer and parser, hypothesis round trips both ways, fuzzed input, and a check
that the committed compiled schema modules are up to date."""

import math
import os
from binascii import unhexlify

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protoc
import schema_alltypes as S
from proto_vectors import VECTORS
from tbdevice import defaultprofile as DP
from tbdevice import protobuf as pb
from tbdevice import tbschema as TB
from tbdevice.protocodec import ProtoCodec
from tbsim import protoschema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS_PROTO = os.path.join(ROOT, "tests", "unit", "proto")
TB_PROTO = os.path.join(ROOT, "tools", "proto", "thingsboard")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


_GOOGLE = {}


def _cls(name):
    if not _GOOGLE:
        pool, _ = protoschema.compile_files(["all_types.proto", "legacy.proto"], TESTS_PROTO)
        tb_pool, _ = protoschema.compile_files(["queue.proto", "transport.proto"], TB_PROTO)
        _GOOGLE["pools"] = (pool, tb_pool)
    pool, tb_pool = _GOOGLE["pools"]
    return protoschema.message_factory.GetMessageClass(
        (pool if name[:2] in ("t.", "t2") else tb_pool).FindMessageTypeByName(name))


def _schema(name):
    return S if name[:2] in ("t.", "t2") else TB


def _is_map(fd):
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


def _conv(fd, v):
    if fd.type == F.TYPE_MESSAGE:
        return from_google(v)
    if fd.type == F.TYPE_ENUM:
        ev = fd.enum_type.values_by_number.get(v)
        return ev.name if ev is not None else v
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return v


def from_google(msg):
    """A Google message as our decoder's dict: JSON names, defaults where no presence, enums by name."""
    out = {}
    for fd in msg.DESCRIPTOR.fields:
        v = getattr(msg, fd.name)
        if _is_map(fd):
            vfd = fd.message_type.fields_by_name["value"]
            out[fd.json_name] = {k: _conv(vfd, v[k]) for k in v}
        elif fd.is_repeated:
            out[fd.json_name] = [_conv(fd, x) for x in v]
        elif fd.has_presence and not msg.HasField(fd.name):
            continue
        else:
            out[fd.json_name] = _conv(fd, v)
    return out


def _nan(o):
    if isinstance(o, dict):
        return {k: _nan(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_nan(v) for v in o]
    return "nan" if isinstance(o, float) and math.isnan(o) else o


def to_google(name, value):
    msg = _cls(name)()
    json_format.ParseDict(_jsonable(value), msg)
    return msg


def _jsonable(o):
    import base64

    if isinstance(o, bytes):
        return base64.b64encode(o).decode()
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_jsonable(v) for v in o]
    if isinstance(o, float) and math.isinf(o):
        return "Infinity" if o > 0 else "-Infinity"
    return o


# ---- the compiler ---------------------------------------------------------------------------------------
def _render_files(paths):
    schema = protoc.Schema()
    schema.add(protoc.parse_files(paths))
    return protoc.render(schema, [os.path.basename(p) for p in paths])


def test_compiled_modules_are_up_to_date():
    """Edit a .proto under tools/proto or tests/unit/proto, then run tools/protoc.py as each module's header says."""
    cases = (
        ([os.path.join(TB_PROTO, "queue.proto"), os.path.join(TB_PROTO, "transport.proto")],
         "lib/tbdevice/tbschema.py"),
        ([os.path.join(TESTS_PROTO, "all_types.proto"), os.path.join(TESTS_PROTO, "legacy.proto")],
         "tests/unit/schema_alltypes.py"),
    )
    for paths, out in cases:
        with open(os.path.join(ROOT, out), encoding="utf-8") as fh:
            assert fh.read() == _render_files(paths), out + " is stale: run tools/protoc.py"
    with open(os.path.join(ROOT, "lib/tbdevice/defaultprofile.py"), encoding="utf-8") as fh:
        assert fh.read() == protoc.render(protoc.profile_schema({}), ["the default schemas"])


def _default_desc(name):
    for role in ("telemetry", "attributes", "rpc_request", "rpc_response"):
        pool = protoschema.profile_message(protoschema.default_schema(role)).DESCRIPTOR.file.pool
        try:
            return pool.FindMessageTypeByName(name)
        except KeyError:
            pass
    raise KeyError(name)


def test_parser_agrees_with_protoc_descriptors():
    for schema in (S, TB, DP):
        for name, fields in schema.M:
            desc = _cls(name).DESCRIPTOR if schema is not DP else _default_desc(name)
            by_number = {fd.number: fd for fd in desc.fields}
            assert sorted(by_number) == [f[0] for f in fields], name
            for f in fields:
                fd = by_number[f[0]]
                assert f[1] == fd.json_name, (name, f)
                assert (f[5] if len(f) > 5 else f[1]) == fd.name, (name, f)
                assert f[2] == fd.type, (name, f)
                if _is_map(fd):
                    assert f[3] == protoc.MAP
                elif fd.is_repeated:
                    assert f[3] == (protoc.PACKED if fd.is_packed else protoc.REPEATED), (name, f)
                else:
                    assert f[3] == (protoc.OPTIONAL if fd.has_presence else protoc.IMPLICIT), (name, f)
                if fd.enum_type is not None:
                    values = schema.E[f[4]][1]
                    assert values == tuple((v.name, v.number) for v in fd.enum_type.values), (name, f)


def test_parser_errors_are_clear():
    for text, needle in (("message A { int32 x = 1; int32 y = 1; }", "used twice"),
                         ("message A { Missing x = 1; }", "unknown type"),
                         ("message A { group G = 1 { } }", "group"),
                         ('syntax = "proto4";', "not supported"),
                         ("message A { int32 x = 0; }", "out of range"),
                         ("message A { int32 x = 1 }", "expected")):
        with pytest.raises(protoc.ProtoError, match=needle):
            protoc.Schema().add([protoc.Parser(text).parse()])


def test_profile_json_roles_and_cli(tmp_path):
    schema = 'syntax = "proto3"; package p; message Other { int32 a = 1; } message Reading { double t = 1; }'
    profile = {"profileData": {"transportConfiguration": {"type": "COAP", "coapDeviceTypeConfiguration": {
        "coapDeviceType": "DEFAULT", "transportPayloadTypeConfiguration": {
            "transportPayloadType": "PROTOBUF", "deviceTelemetryProtoSchema": schema}}}}}
    path = tmp_path / "profile.json"
    path.write_text(protoschema.json.dumps(profile))
    out = tmp_path / "myprofile.py"
    assert protoc.main(["--profile", str(path), "-o", str(out)]) == 0
    ns = {}
    exec(out.read_text(), ns)
    assert ns["M"][ns["TELEMETRY"]][0] == "p.Reading"  # the last top-level message
    assert ns["M"][ns["RPC_RESPONSE"]][0] == "rpc.RpcResponseMsg"  # defaults for roles not set


# ---- the codec against Google ------------------------------------------------------------------------
def test_vectors_are_what_google_writes():
    for name, value, hexed in VECTORS:
        assert to_google(name, value).SerializeToString() == unhexlify(hexed), (name, value)


I32 = st.integers(-2**31, 2**31 - 1)
I64 = st.integers(-2**63, 2**63 - 1)
U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
TEXT = st.text(max_size=20)
F64 = st.floats(allow_nan=False)
F32 = st.floats(width=32, allow_nan=False)
ENUM = st.sampled_from(["RED", "GREEN", "BLUE", "NEG"])
INNER = st.recursive(
    st.fixed_dictionaries({}, optional={"a": I32, "s": TEXT}),
    lambda kids: st.fixed_dictionaries({}, optional={"a": I32, "s": TEXT, "kids": st.lists(kids, max_size=3)}),
    max_leaves=6)
ALL = st.fixed_dictionaries({}, optional={
    "fDouble": F64, "fFloat": F32, "fInt64": I64, "fUint64": U64, "fInt32": I32, "fFixed64": U64, "fFixed32": U32,
    "fBool": st.booleans(), "fString": TEXT, "fBytes": st.binary(max_size=20), "fUint32": U32, "fEnum": ENUM,
    "fSfixed32": I32, "fSfixed64": I64, "fSint32": I32, "fSint64": I64, "inner": INNER, "oInt32": I32,
    "oString": TEXT, "packedInt32": st.lists(I32, max_size=5), "unpackedInt32": st.lists(I32, max_size=5),
    "packedDouble": st.lists(F64, max_size=5), "rString": st.lists(TEXT, max_size=4),
    "rInner": st.lists(INNER, max_size=3), "rEnum": st.lists(ENUM, max_size=4),
    "packedSint64": st.lists(I64, max_size=5), "mStrInt": st.dictionaries(TEXT, I32, max_size=3),
    "mIntInner": st.dictionaries(I32, INNER, max_size=3), "customName": TEXT,
    "packedFixed32": st.lists(U32, max_size=4), "bigNumber": I32,
    "cText": TEXT})


def _maps_small(value):
    return len(value.get("mStrInt", {})) <= 1 and len(value.get("mIntInner", {})) <= 1


@FAST
@given(ALL)
def test_our_encoder_then_google_decoder_and_back(value):
    ours = bytes(pb.encode(S, pb.find(S, "t.All"), value))
    g = _cls("t.All").FromString(ours)
    assert g == to_google("t.All", value)
    if _maps_small(value):  # map order aside, the bytes are Google's own
        assert ours == g.SerializeToString()
    # and Google's bytes decode with ours to what Google holds
    assert pb.decode(S, pb.find(S, "t.All"), g.SerializeToString()) == from_google(g)


@FAST
@given(st.binary(max_size=64))
def test_fuzzed_bytes_decode_like_google_or_raise_decode_error(data):
    for name in ("t.All", "transport.GetAttributeResponseMsg"):
        s = _schema(name)
        try:
            ours = pb.decode(s, pb.find(s, name), data)
        except pb.DecodeError:
            continue  # never another exception; stricter than Google on wire-type mismatches and groups
        assert _nan(ours) == from_google(_cls(name).FromString(data)), (name, data.hex())


@FAST
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(
    st.booleans(), I64, st.floats(allow_nan=False, allow_infinity=False), TEXT,
    st.dictionaries(st.text(max_size=4), st.integers(-5, 5), max_size=2)), max_size=5))
def test_attribute_update_from_google_bytes(shared):
    kvs = []
    for k, v in shared.items():
        kv = {"key": k}
        if isinstance(v, bool):
            kv.update(type="BOOLEAN_V", bool_v=v)
        elif isinstance(v, int):
            kv.update(type="LONG_V", long_v=v)
        elif isinstance(v, float):
            kv.update(type="DOUBLE_V", double_v=v)
        elif isinstance(v, str):
            kv.update(type="STRING_V", string_v=v)
        else:
            kv.update(type="JSON_V", json_v=protoschema.json.dumps(v))
        kvs.append({"ts": 1, "kv": kv})
    msg = _cls("transport.AttributeUpdateNotificationMsg")()
    json_format.ParseDict({"sharedUpdated": kvs}, msg, ignore_unknown_fields=False)
    assert ProtoCodec().attribute_update(msg.SerializeToString()) == shared
