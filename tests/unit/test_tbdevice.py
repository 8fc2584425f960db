# Sans-IO parts of tbdevice: the JSON codec, the attribute cache, the RPC dispatcher's
# bookkeeping and the error tree (CPython and unix port).
import json

from tbdevice import errors
from tbdevice.attributes import SharedAttributes
from tbdevice.codec import JsonCodec, telemetry_body

C = JsonCodec()


def test_telemetry_body_forms():
    assert telemetry_body({"a": 1}) == {"a": 1}
    assert telemetry_body({"a": 1}, 5) == {"ts": 5, "values": {"a": 1}}
    already = {"ts": 1, "values": {"a": 1}}
    assert telemetry_body(already, 5) is already
    arr = [{"ts": 1, "values": {"a": 1}}]
    assert telemetry_body(arr, 5) is arr


def test_request_bodies():
    assert C.telemetry({"t": 21.5}) == '{"t":21.5}'
    assert json.loads(C.telemetry({"t": 1}, 7)) == {"ts": 7, "values": {"t": 1}}
    assert json.loads(C.rpc_call("m", None)) == {"method": "m", "params": None}
    assert json.loads(C.rpc_reply({"ok": 1})) == {"ok": 1}
    assert json.loads(C.rpc_reply(5)) == {"result": 5}  # the server takes only an object
    assert C.claim() == b""
    assert json.loads(C.claim("s", 60000)) == {"secretKey": "s", "durationMs": 60000}
    assert json.loads(C.provision("k", "s", "n")) == {
        "provisionDeviceKey": "k", "provisionDeviceSecret": "s", "deviceName": "n"}


def test_answers():
    assert C.attribute_response(None) == {"client": {}, "shared": {}}
    assert C.attribute_response(b'{"shared":{"a":1}}') == {"client": {}, "shared": {"a": 1}}
    assert C.rpc_request(b'{"id":3,"method":"m","params":{}}')["id"] == 3
    for bad in (b"[1]", b"{", b'{"id":"3","method":"m"}'):
        try:
            C.rpc_request(bad)
        except errors.BadPayload:
            continue
        assert False, bad
    assert C.rpc_response(b"") is None


def test_shared_attributes_replace_and_apply():
    sa = SharedAttributes()
    seen = []
    sa.on("a", lambda v: seen.append(("a", v)))
    sa.on_any(lambda ch, de: seen.append((ch, de)))
    assert sa.replace({"a": 1, "b": 2}) == ({"a": 1, "b": 2}, [])
    assert sa.apply({"a": 1}) == ({}, [])  # no change, no callback
    assert sa.apply({"a": 5, "deleted": ["b"]}) == ({"a": 5}, ["b"])
    assert sa.values == {"a": 5}
    # a re-subscription's full state reports exactly what was missed
    assert sa.replace({"c": 3}) == ({"c": 3}, ["a"])
    assert seen == [("a", 1), ({"a": 1, "b": 2}, []), ("a", 5), ({"a": 5}, ["b"]), ("a", None), ({"c": 3}, ["a"])]


def test_raising_attribute_callbacks_are_reported_and_the_others_run():
    # Issue 15 item 1: anything a callback raises is reported with its key; the copy is
    # already updated and every other callback still runs.
    failed = []
    sa = SharedAttributes(lambda key, e: failed.append((key, type(e).__name__)))
    seen = []

    def boom(v):
        return 1 // 0

    def bad_any(ch, de):
        raise RuntimeError("any")

    sa.on("a", boom)
    sa.on("a", lambda v: seen.append(("a", v)))
    sa.on_any(bad_any)
    sa.on_any(lambda ch, de: seen.append((ch, de)))
    assert sa.apply({"a": 1, "b": 2}) == ({"a": 1, "b": 2}, [])
    assert sa.values == {"a": 1, "b": 2}
    assert seen == [("a", 1), ({"a": 1, "b": 2}, [])]
    assert failed == [("a", "ZeroDivisionError"), (None, "RuntimeError")] and sa.failures == 2
    sa.apply({"deleted": ["a"]})  # deletion: cb(None) raises too
    assert failed[-2] == ("a", "ZeroDivisionError") and sa.failures == 4
    # without a report hook they are only counted
    quiet = SharedAttributes()
    quiet.on("k", boom)
    quiet.apply({"k": 1})
    assert quiet.values == {"k": 1} and quiet.failures == 1


def test_async_attribute_callbacks_are_left_pending_in_order():
    sa = SharedAttributes()

    async def later(v):
        return v

    async def later_any(ch, de):
        return ch

    sa.on("a", later)
    sa.on_any(later_any)
    sa.apply({"a": 1})
    assert [k for k, _ in sa.pending] == ["a", None]
    for _, co in sa.pending:
        co.close()  # the Downlink awaits them; here they are only counted


def test_errors_keep_code():
    e = errors.for_code(128, "telemetry")
    assert isinstance(e, errors.BadRequest) and e.code == 128 and "4.00" in str(e)
    assert isinstance(errors.for_code(129, "x"), errors.Unauthorized)
    assert isinstance(errors.for_code(132, "x"), errors.NotFound)
    e = errors.for_code(160, "x")
    assert isinstance(e, errors.ServerError) and "5.00" in str(e)
    assert isinstance(errors.for_code(163, "x"), errors.ServerError)
    assert type(errors.for_code(131, "x")) is errors.TbError


def test_provision_error_status():
    e = errors.ProvisionError("provision: NOT_FOUND", "NOT_FOUND", 128)
    assert e.status == "NOT_FOUND" and e.code == 128 and isinstance(e, errors.TbError)
