# The tbdevice API on the unix port against tbsim: what the server stores and answers.
import json
import os
import tempfile

import mpy


def plan(sim, ops, token=None, heap="128K", timeout=60, **extra):
    spec = {"host": "127.0.0.1", "port": sim.coap_port, "token": token or sim.token, "ops": ops}
    spec.update(extra)
    arg = json.dumps(spec)
    path = None
    if len(arg) > 200:  # this unix port aborts on an argument of 256 bytes or more: a file then
        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(arg)
        arg = "@" + path
    try:
        r = mpy.run(["tests/integration/mpy/plan.py", arg], heap=heap, timeout=timeout)
    finally:
        if path:
            os.unlink(path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(out) == len(ops), r.stdout + r.stderr
    return out


def latest(sim, keys):
    dev = sim.rest.device_id(sim.device_name)
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % dev, keys=",".join(keys),
                       useStrictDataTypes="true")
    return {k: v[0] for k, v in got.items() if v}


def test_telemetry_types_as_the_server_stores_them(tbsim):
    values = {"i": 42, "f": 21.5, "d": 42.0, "sum": 0.1 + 0.2, "tiny": 1.2345678901234567e-10,
              "b": True, "s": "text", "n": "123", "obj": {"a": 1}}
    out = plan(tbsim, [["telemetry", values]])
    assert out[0]["ok"], out
    got = latest(tbsim, list(values))
    assert got["i"]["value"] == 42
    assert got["f"]["value"] == 21.5
    assert got["d"]["value"] == 42.0 and isinstance(got["d"]["value"], float)
    # 0.1 + 0.2 must arrive as a double, not as the string "0.30000000000000004" (spec §5)
    assert got["sum"]["value"] == 0.3 and isinstance(got["sum"]["value"], float)
    assert isinstance(got["tiny"]["value"], float)
    assert got["b"]["value"] is True
    assert got["s"]["value"] == "text"
    assert got["n"]["value"] == 123  # numeric strings are cast (type_cast_enabled)


def test_timestamped_and_array_telemetry(tbsim):
    out = plan(tbsim, [
        ["telemetry", {"t": 1}, 1700000000000],
        ["telemetry", [{"ts": 1700000001000, "values": {"t": 2}}, {"ts": 1700000002000, "values": {"t": 3}}]],
    ])
    assert all(o["ok"] for o in out), out
    dev = tbsim.rest.device_id(tbsim.device_name)
    hist = tbsim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % dev, keys="t",
                          startTs="0", endTs="1800000000000", limit="10", useStrictDataTypes="true")
    assert [(p["ts"], p["value"]) for p in hist["t"]] == [(1700000002000, 3), (1700000001000, 2), (1700000000000, 1)]


def test_attributes_and_requests(tbsim):
    dev = tbsim.rest.device_id(tbsim.device_name)
    tbsim.rest.post("/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % dev, {"target": 22.5, "mode": "eco"})
    out = plan(tbsim, [
        ["attributes", {"serial": "SN-1", "fw": "0.1.0"}],
        ["request", ["serial"], ["target"]],
        ["request"],
        ["request", ["nope"], ["nothing"]],
        ["request", None, ["mode"]],
    ])
    assert all(o["ok"] for o in out), out
    assert out[1]["result"] == {"client": {"serial": "SN-1"}, "shared": {"target": 22.5}}
    assert out[2]["result"] == {"client": {"serial": "SN-1", "fw": "0.1.0"}, "shared": {"target": 22.5, "mode": "eco"}}
    # Nothing found is 4.04 with no body over CoAP: the API answers "none", not an error (spec §6.1).
    assert out[3]["result"] == {"client": {}, "shared": {}}
    assert out[4]["result"] == {"client": {}, "shared": {"mode": "eco"}}


def test_client_side_rpc(tbsim):
    out = plan(tbsim, [
        ["rpc", "getCurrentTime", None],
        ["rpc", "echo", {"x": [1, 2]}],
        ["rpc", "noSuchMethod", {}, 1500],
    ])
    assert out[0]["ok"] and isinstance(out[0]["result"]["time"], int), out
    assert out[1]["result"] == {"x": [1, 2]}
    # The default rule chain never answers: the caller sees a timeout (spec §8).
    assert not out[2]["ok"] and out[2]["error"] == "Timeout", out


def test_claim(tbsim):
    mark = tbsim.mark()
    out = plan(tbsim, [["claim", "s3cret", 60000], ["claim"]])
    assert all(o["ok"] for o in out), out
    assert tbsim.wait_for_log("claim", start=mark)


def test_errors_keep_their_code(tbsim):
    out = plan(tbsim, [["telemetry", {"a": 1}], ["attributes", {"a": 1}]], token="WRONG_TOKEN")
    assert [o["error"] for o in out] == ["Unauthorized", "Unauthorized"], out
    assert out[0]["code"] == 129  # 4.01


def test_provision_outcomes(tbsim):
    out = plan(tbsim, [
        ["provision", tbsim.provision_key, tbsim.provision_secret, "prov-dev-1"],
        ["provision", tbsim.provision_key, tbsim.provision_secret, "prov-dev-1"],
        ["provision", tbsim.provision_key, "wrong", "prov-dev-2"],
    ])
    assert out[0]["ok"] and len(out[0]["result"]["token"]) >= 10, out
    assert (out[1]["error"], out[1]["status"]) == ("ProvisionError", "FAILURE")
    assert (out[2]["error"], out[2]["status"]) == ("ProvisionError", "NOT_FOUND")
    # the new token works for telemetry
    out2 = plan(tbsim, [["telemetry", {"hello": 1}]], token=out[0]["result"]["token"])
    assert out2[0]["ok"], out2


BAD_VALUES = [  # issue 15 item 7: {"$object": 0} is an object(), {"$bytes": ..} bytes (tests/integration/mpy/plan.py)
    ["telemetry", {"t": {"$object": 0}}],
    ["telemetry", {"ok": 1, "raw": {"$bytes": "ab"}}],
    ["telemetry", {"t": {"$object": 0}}, 1700000000000],
    ["attributes", {"serial": {"$bytes": "SN"}}],
    ["telemetry", {"after": 1}],
]


def refused_at_the_call(out):
    """The first four of BAD_VALUES raised ValueError at the call, naming the key; the fifth went."""
    for o, key in zip(out[:4], ("'t'", "'raw'", "'t'", "'serial'")):
        assert (o["ok"], o["error"], o["at"]) == (False, "ValueError", "call"), o
        assert key in o["message"], o
    assert out[4]["ok"], out[4]


def test_a_value_json_cannot_carry_raises_at_the_call_and_nothing_is_sent(tbsim):
    # MicroPython's json wrote {"t":<object>} (4.00 at the server) and bytes as a string.
    m = tbsim.mark()
    refused_at_the_call(plan(tbsim, BAD_VALUES))
    assert set(latest(tbsim, ["t", "ok", "raw", "after"])) == {"after"}
    dev = tbsim.rest.device_id(tbsim.device_name)
    attrs = tbsim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/attributes/CLIENT_SCOPE" % dev)
    assert not [a for a in attrs if a["key"] == "serial"], attrs
    assert not [x for x in tbsim.lines[m:] if "4.00" in x], tbsim.log_text()


UNRESOLVED = """
import asyncio
from tbdevice.device import Device
from tbdevice.httplink import HttpLink

async def main():
    for link in (None, HttpLink("no-such-host.invalid", 80)):
        dev = Device("no-such-host.invalid", "TOKEN", link=link)  # log=None: nothing else would say it
        try:
            await dev.connect()
            print("connected")
        except OSError as e:
            print("OSError", e)

asyncio.run(main())
"""


def test_connect_to_a_host_name_that_does_not_resolve_raises():
    # Issue 15 item 7: connect() retried getaddrinfo's failure forever, silently with log=None.
    r = mpy.run(["-c", UNRESOLVED], heap="256K", timeout=20)  # before the fix: no answer at all
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 2, r.stdout + r.stderr
    for line in lines:  # CoAP, then HTTP
        assert line.startswith("OSError no-such-host.invalid: the host name does not resolve"), line

