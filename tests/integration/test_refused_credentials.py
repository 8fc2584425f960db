# Credentials the server refuses (issue 15 item 3): a wrong access token is not a bad payload.
# The reference app keeps every sample queued, backs off to its longest wait, says once what is
# wrong, does not re-register its subscriptions every few seconds; once the token is fixed on the
# server (REST: POST /api/device/credentials) the samples taken meanwhile arrive. CoAP and HTTP.
import time

import pytest

from test_firmware import Device, write_config
from tbtest import wait_until

WRONG = "WRONG_TOKEN_1"


def _history(sim, key):
    did = sim.rest.device_id(sim.device_name)
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys=key, startTs=0,
                       endTs=int(time.time() * 1000) + 3600000, limit=10000, orderBy="ASC")
    return [int(p["ts"]) for p in got.get(key, [])]


@pytest.mark.parametrize("transport", ["coap", "http"])
def test_refused_token_keeps_samples_until_the_server_takes_it(tbsim, tmp_path, transport):
    port = tbsim.coap_port if transport == "coap" else tbsim.http_port
    m = tbsim.mark()
    dev = Device(write_config(tmp_path, port=port, transport=transport, token=WRONG, telemetry_interval_ms=200,
                              queue={"retry_ms": 200, "retry_max_ms": 1000, "gap_ms": 0}))
    try:
        assert dev.wait_for("credentials refused", 15), dev.output()
        # Samples go on being taken and stay queued: nothing is dropped as "refused".
        assert wait_until(lambda: sum("retrying in" in x for x in dev.lines) >= 4, 15), dev.output()
        out = dev.output()
        assert "samples refused" not in out, out
        line = next(x for x in dev.lines if "credentials refused" in x)
        assert "access token in `token`" in line, line
        assert out.count("credentials refused") == 1, out  # said once
        # The subscriptions back off to the longest wait instead of re-registering every few seconds.
        if transport == "coap":
            regs = "\n".join(tbsim.lines[m:])
            assert regs.count("Observe=0") <= 2, regs[-3000:]
        else:
            assert out.count("poll: Unauthorized") <= 2, out
        # Fixed on the server's side: the device's credentials become the token the device has.
        did = tbsim.rest.device_id(tbsim.device_name)
        t_fixed = time.time()
        tbsim.rest.post("/api/device/credentials", {"deviceId": {"id": did, "entityType": "DEVICE"},
                                                    "credentialsType": "ACCESS_TOKEN", "credentialsId": WRONG})
        # stored: the samples taken while the token was refused, then the live ones (not "before the
        # refusal was seen": the first sample comes after the boot report's refusal)
        got = wait_until(lambda: (lambda h: h if h and h[0] < t_fixed * 1000 and h[-1] > time.time() * 1000 - 3000
                                  else None)(_history(tbsim, "temperature")), 20, interval=0.25)
        assert got, dev.output()
        ok = "2.01" if transport == "coap" else "200"  # the log says the transport's own status
        assert dev.wait_for("queued samples -> " + ok, 10), dev.output()
        if transport == "coap":  # the subscriptions too, at once rather than after their longest back-off
            assert wait_until(lambda: tbsim.rest.request("POST", "/api/plugins/rpc/twoway/" + did, {
                "method": "getStatus", "params": {}, "timeout": 1000}, timeout=6)[0] == 200, 10), dev.output()
    finally:
        dev.stop()
