# Sans-IO parts of tbdevice and the firmware's config validation (CPython and unix port).
from tbdevice import errors
from tbdevice.device import _query, telemetry_body


def test_telemetry_body_forms():
    assert telemetry_body({"a": 1}) == {"a": 1}
    assert telemetry_body({"a": 1}, 5) == {"ts": 5, "values": {"a": 1}}
    already = {"ts": 1, "values": {"a": 1}}
    assert telemetry_body(already, 5) is already
    arr = [{"ts": 1, "values": {"a": 1}}]
    assert telemetry_body(arr, 5) is arr


def test_query_one_option_per_list():
    assert _query("clientKeys", ["a", "b"]) == ("clientKeys=a,b",)
    assert _query("sharedKeys", "c") == ("sharedKeys=c",)
    assert _query("sharedKeys", None) == ()
    assert _query("sharedKeys", []) == ()


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
