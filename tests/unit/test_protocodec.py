# ProtoCodec (lib/tbdevice/protocodec.py): the JsonCodec methods over protobuf (spec §11):
# the profile's schemas for telemetry, attributes and server-side RPC; ThingsBoard's
# built-in messages for the rest. Shared: pytest and the unix port.
from binascii import unhexlify

from tbdevice import defaultprofile as DP
from tbdevice import errors
from tbdevice import protobuf as pb
from tbdevice import tbschema as TB
from tbdevice.protocodec import ProtoCodec, load_profile

C = ProtoCodec()


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return str(e)
    raise AssertionError("%s not raised" % exc.__name__)


def _tb(name, value):
    return bytes(pb.encode(TB, pb.find(TB, name), value))


class TsProfile:
    # A profile whose telemetry schema has ts and values (timestamped, spec §11.1) and
    # whose RPC schemas carry structured params and replies.
    M = DP.M + (
        ("p.Reading", ((1, "ts", 3, 0, None), (2, "values", 11, 1, len(DP.M) + 1))),
        ("p.Values", ((1, "temperature", 1, 1, None), (2, "count", 5, 1, None))),
        ("p.Rpc", ((1, "method", 9, 0, None), (2, "requestId", 5, 0, None), (3, "params", 11, 1, len(DP.M) + 3))),
        ("p.Params", ((1, "pin", 5, 0, None), (2, "value", 5, 0, None))),
        ("p.Reply", ((1, "pin", 5, 1, None), (2, "value", 5, 1, None))),
    )
    E = ()
    TELEMETRY = len(DP.M)
    ATTRIBUTES = DP.ATTRIBUTES
    RPC_REQUEST = len(DP.M) + 2
    RPC_RESPONSE = len(DP.M) + 4


def test_telemetry_default_schema():
    body = C.telemetry({"temperature": 21.5, "humidity": 40.25}, 1700000000000)
    # no ts/values fields in the default schema: the server stamps it, so ts is left out
    assert bytes(body) == unhexlify("0900000000008035401100000000002044" + "40"), body
    d = pb.decode(DP, DP.TELEMETRY, body)
    assert d == {"temperature": 21.5, "humidity": 40.25}


def test_telemetry_nested_default_inner_object():
    body = C.telemetry({"innerObject": {"key1": "a", "key4": -1}})
    assert pb.decode(DP, DP.TELEMETRY, body) == {"innerObject": {"key1": "a", "key4": -1}}


def test_telemetry_key_outside_schema_is_schema_mismatch():
    msg = _raises(errors.SchemaMismatch, C.telemetry, {"current_fw_title": "x"})
    assert "current_fw_title" in msg
    _raises(errors.SchemaMismatch, C.telemetry, [{"temperature": 1.0}])
    _raises(errors.SchemaMismatch, C.telemetry, {"temperature": "hot"})


def test_telemetry_timestamped_schema():
    c = ProtoCodec(TsProfile)
    body = c.telemetry({"temperature": 1.5, "count": 2}, 1700000000000)
    assert pb.decode(TsProfile, TsProfile.TELEMETRY, body) == {
        "ts": 1700000000000, "values": {"temperature": 1.5, "count": 2}}


def test_attributes_default_schema():
    body = C.attributes({"firmwareVersion": "1.0", "serialNumber": "SN-1"})
    assert bytes(body) == b"\n\x031.0\x12\x04SN-1"
    _raises(errors.SchemaMismatch, C.attributes, {"other": 1})


def test_rpc_call_is_transportapi_rpc_request_with_json_params():
    body = C.rpc_call("getCurrentTime", {"a": 1})
    assert pb.decode(TB, pb.find(TB, "transportapi.RpcRequest"), body) == {
        "method": "getCurrentTime", "params": '{"a":1}'}
    assert pb.decode(TB, pb.find(TB, "transportapi.RpcRequest"), C.rpc_call("m", None))["params"] == "null"


def test_rpc_reply_default_schema_carries_json_text():
    body = C.rpc_reply({"pin": 1, "value": 0})
    assert pb.decode(DP, DP.RPC_RESPONSE, body) == {"payload": '{"pin":1,"value":0}'}
    assert pb.decode(DP, DP.RPC_RESPONSE, C.rpc_reply(5)) == {"payload": '{"result":5}'}
    # a reply that has the schema's own shape goes as it is
    assert pb.decode(DP, DP.RPC_RESPONSE, C.rpc_reply({"payload": "ok"})) == {"payload": "ok"}


def test_rpc_reply_custom_schema():
    c = ProtoCodec(TsProfile)
    assert pb.decode(TsProfile, TsProfile.RPC_RESPONSE, c.rpc_reply({"pin": 2, "value": 1})) == {"pin": 2, "value": 1}


def test_claim_and_provision_bodies():
    assert bytes(C.claim()) == b""
    assert bytes(C.claim("s", 60000)) == unhexlify("0a017310e0d403")
    assert bytes(C.provision("K", "S", "d1", "T")) == unhexlify("0a0264311a060a014b12015322050a030a0154")
    assert bytes(C.provision("K", "S")) == unhexlify("1a060a014b120153")


def test_attribute_response_types():
    kv = lambda k, t, f, v: {"ts": 1, "kv": {"key": k, "type": t, f: v}}
    payload = _tb("transport.GetAttributeResponseMsg", {
        "clientAttributeList": [kv("b", "BOOLEAN_V", "boolV", True), kv("n", "LONG_V", "longV", -5)],
        "sharedAttributeList": [kv("d", "DOUBLE_V", "doubleV", 2.5), kv("s", "STRING_V", "stringV", "x"),
                                kv("j", "JSON_V", "jsonV", '{"a":[1]}'), kv("f", "BOOLEAN_V", "boolV", False)]})
    assert C.attribute_response(payload) == {
        "client": {"b": True, "n": -5}, "shared": {"d": 2.5, "s": "x", "j": {"a": [1]}, "f": False}}
    assert C.attribute_response(None) == {"client": {}, "shared": {}}


def test_attribute_update_and_deletion():
    payload = _tb("transport.AttributeUpdateNotificationMsg", {
        "sharedUpdated": [{"ts": 1, "kv": {"key": "telemetry_interval_ms", "type": "LONG_V", "longV": 500}}],
        "sharedDeleted": ["gone"]})
    assert C.attribute_update(payload) == {"telemetry_interval_ms": 500, "deleted": ["gone"]}
    assert C.attribute_update(b"") == {}  # the first answer when there are no shared attributes


def test_rpc_request_default_schema_json_params():
    payload = pb.encode(DP, DP.RPC_REQUEST, {"method": "setGpio", "requestId": 3, "params": '{"pin":1,"value":1}'})
    assert C.rpc_request(payload) == {"id": 3, "method": "setGpio", "params": {"pin": 1, "value": 1}}
    payload = pb.encode(DP, DP.RPC_REQUEST, {"method": "echo", "requestId": 4, "params": "plain"})
    assert C.rpc_request(payload)["params"] == "plain"
    _raises(errors.BadPayload, C.rpc_request, pb.encode(DP, DP.RPC_REQUEST, {"method": "x"}))


def test_rpc_request_custom_schema_params_message():
    c = ProtoCodec(TsProfile)
    payload = pb.encode(TsProfile, TsProfile.RPC_REQUEST, {"method": "setGpio", "requestId": 7,
                                                           "params": {"pin": 2, "value": 1}})
    assert c.rpc_request(payload) == {"id": 7, "method": "setGpio", "params": {"pin": 2, "value": 1}}


def test_rpc_response_payload_and_error():
    ok = _tb("transport.ToServerRpcResponseMsg", {"requestId": 1, "payload": '{"time":5}'})
    assert C.rpc_response(ok) == {"time": 5}
    err = _tb("transport.ToServerRpcResponseMsg", {"requestId": 1, "error": "no rule chain"})
    assert C.rpc_response(err) == {"error": "no rule chain"}
    # the server's own client-RPC timeout (wire-mqtt §8) is a Timeout, as its JSON form is over MQTT
    timeout = _tb("transport.ToServerRpcResponseMsg", {"requestId": 1, "error": "timeout"})
    _raises(errors.Timeout, C.rpc_response, timeout)
    assert C.rpc_response(b"") is None


def test_mqtt_attribute_request_and_rpc_request_with_the_topic_id():
    # transportapi.AttributesRequest: comma-separated keys; empty bytes ask for every attribute (wire-mqtt §5)
    assert bytes(C.attributes_request({})) == b""
    body = C.attributes_request({"clientKeys": "a,b", "sharedKeys": "c"})
    got = pb.decode(TB, pb.find(TB, "transportapi.AttributesRequest"), body)
    assert got == {"clientKeys": "a,b", "sharedKeys": "c"}
    # over MQTT the id is the topic's (wire-mqtt §7), whatever the schema's requestId says or when it has none
    i = DP.RPC_REQUEST
    req = pb.encode(DP, i, {"method": "m", "params": '{"x":1}'})
    assert C.rpc_request((7, req)) == {"id": 7, "method": "m", "params": {"x": 1}}
    assert C.rpc_request((0, pb.encode(DP, i, {"method": "m", "requestId": 3})))["id"] == 0
    # the state MQTT reads with an attribute request comes already decoded
    assert C.attribute_update({"mode": "eco"}) == {"mode": "eco"}


def test_provision_response():
    ok = _tb("transport.ProvisionDeviceResponseMsg", {"status": "SUCCESS", "credentialsValue": "TOK"})
    r = C.provision_response(ok)
    assert r["status"] == "SUCCESS" and r["credentialsType"] == "ACCESS_TOKEN" and r["credentialsValue"] == "TOK"
    assert C.provision_response(_tb("transport.ProvisionDeviceResponseMsg", {"status": "NOT_FOUND"}))["status"] == \
        "NOT_FOUND"


def test_malformed_answers_are_bad_payload():
    for fn in (C.attribute_response, C.attribute_update, C.rpc_request, C.rpc_response, C.provision_response):
        for junk in (b"\x0a\x05ab", b"\x08", b"\x0f", b"\xff" * 12):
            _raises(errors.BadPayload, fn, junk)
    bad_json = _tb("transport.AttributeUpdateNotificationMsg", {
        "sharedUpdated": [{"kv": {"key": "j", "type": "JSON_V", "jsonV": "{"}}]})
    _raises(errors.BadPayload, C.attribute_update, bad_json)


def test_load_profile_by_name():
    assert load_profile("tbdevice.defaultprofile") is DP
    assert ProtoCodec("tbdevice.defaultprofile").profile is DP
    _raises(ValueError, load_profile, "tbdevice.tbschema")  # built-ins, not a profile


def test_config_payload_and_proto_keys():
    import config

    cfg = config.validate({"host": "h", "token": "t", "payload": "protobuf", "proto": "myprofile"})
    assert cfg["payload"] == "protobuf" and cfg["proto"] == "myprofile"
    for bad in ({"payload": "protobuf", "transport": "http"}, {"payload": "cbor"}, {"proto": ""}):
        d = {"host": "h", "token": "t"}
        d.update(bad)
        _raises(config.ConfigError, config.validate, d)


def test_a_value_no_payload_type_carries_is_value_error_naming_the_key():
    # Issue 15 item 7: as with the JSON codec; a JSON value the schema cannot carry stays SchemaMismatch.
    c = ProtoCodec()
    for fn in (c.telemetry, c.attributes):
        for v, typ in ((object(), "object"), (b"21.5", "bytes")):
            try:
                fn({"temperature": v})
            except ValueError as e:
                assert "'temperature'" in str(e) and typ in str(e), e
            else:
                assert False, (fn, v)
    try:
        c.telemetry({"temperature": "warm"})
    except errors.SchemaMismatch:
        pass
    else:
        assert False
