# BlockingDevice (wake, report, sleep) on the unix port against tbsim: every call runs the
# event loop just long enough, and the socket stays open between calls.
import mpy


def test_blocking_device_calls(tbsim):
    r = mpy.run(["tests/integration/mpy/blocking.py", "127.0.0.1", str(tbsim.coap_port), tbsim.token],
                heap="384K", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "done", r.stdout
    assert "attrs {'client': {'battery': 3.7}, 'shared': {}}" in lines or \
        "attrs {'shared': {}, 'client': {'battery': 3.7}}" in lines, r.stdout
    assert any(l.startswith("rpc {") and "'n': 2" in l for l in lines), r.stdout
    dev = tbsim.rest.device_id(tbsim.device_name)
    hist = tbsim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % dev, keys="wake",
                          startTs="0", endTs="4000000000000", limit="10", useStrictDataTypes="true")
    vals = sorted(p["value"] for p in hist["wake"])
    assert vals == [1, 2], hist
    assert any(p["ts"] == 1700000000000 for p in hist["wake"])
