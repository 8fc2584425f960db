"""ThingsBoard's HTTP device API on tbsim's REST port (spec §15): the seed page's curl calls, via urllib."""

import threading

from tbtest import RestClient


def device(sim):
    """A RestClient without login for /api/v1/{token}/... calls."""
    return RestClient(sim.http_url)


def call(sim, method, path, body=None, query=None, timeout=10):
    return device(sim).request(method, "/api/v1/" + path.replace("{token}", sim.token), body, query, auth=False,
                               timeout=timeout)


def test_http_telemetry_attributes_and_errors(tbsim):
    assert call(tbsim, "POST", "{token}/telemetry", {"temperature": 42, "humidity": 73}) == (200, None)
    assert call(tbsim, "POST", "BAD_TOKEN/telemetry", {"a": 1}) == (401, None)
    assert call(tbsim, "POST", "{token}/telemetry", 5)[0] == 500
    assert call(tbsim, "GET", "{token}/attributes", query={"clientKeys": "attribute1"}) == (200, {})
    assert call(tbsim, "POST", "{token}/attributes", {"attribute1": "value1", "attribute2": True, "attribute3": 43.0})[0] == 200
    got = call(tbsim, "GET", "{token}/attributes", query={"clientKeys": "attribute1,attribute2",
                                                        "sharedKeys": "shared1,shared2"})
    assert got == (200, {"client": {"attribute1": "value1", "attribute2": True}})
    did = tbsim.rest.device_id("Thermo-1")
    latest = tbsim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys="temperature")
    assert latest["temperature"][0]["value"] == "42"


def test_http_attribute_updates_long_poll(tbsim):
    out = []
    t = threading.Thread(target=lambda: out.append(call(tbsim, "GET", "{token}/attributes/updates",
                                                        query={"timeout": "5000"})))
    t.start()
    did = tbsim.rest.device_id("Thermo-1")
    # An update made before the poll waits is not queued (spec §15), and nothing says when the poll
    # has arrived: posted again until it has answered.
    for _ in range(20):
        tbsim.rest.post("/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % did, {"interval": 1000})
        t.join(0.25)
        if not t.is_alive():
            break
    t.join(6)
    assert out == [(200, {"interval": 1000})]
    assert call(tbsim, "GET", "{token}/attributes/updates", query={"timeout": "200"}) == (408, None)


def test_http_rpc_poll_reply_and_client_rpc(tbsim):
    did = tbsim.rest.device_id("Thermo-1")
    result = []
    t = threading.Thread(target=lambda: result.append(tbsim.rest.request(
        "POST", "/api/plugins/rpc/twoway/" + did, {"method": "setGpio", "params": {"pin": 23, "value": 1}})))
    t.start()
    status, body = call(tbsim, "GET", "{token}/rpc", query={"timeout": "5000"})
    assert status == 200 and body == {"id": 1, "method": "setGpio", "params": {"pin": 23, "value": 1}}
    assert call(tbsim, "POST", "{token}/rpc/1", {"result": "ok"})[0] == 200
    t.join(10)
    assert result == [(200, {"result": "ok"})]
    status, body = call(tbsim, "POST", "{token}/rpc", {"method": "getCurrentTime", "params": {}})
    assert status == 200 and isinstance(body["time"], int)
    assert call(tbsim, "POST", "{token}/rpc", {"method": "getCurrentTime"})[0] == 500  # params required
    assert call(tbsim, "POST", "{token}/claim", {"secretKey": "k"})[0] == 200


def test_http_provision_is_always_200(tbsim):
    ok = {"deviceName": "H-1", "provisionDeviceKey": tbsim.provision_key,
          "provisionDeviceSecret": tbsim.provision_secret}
    status, body = call(tbsim, "POST", "provision", ok)
    assert status == 200 and body["status"] == "SUCCESS" and len(body["credentialsValue"]) == 20
    assert call(tbsim, "POST", "provision", ok) == (200, {"errorMsg": "Failed to provision device!",
                                                         "status": "FAILURE"})
    bad = dict(ok, provisionDeviceSecret="nope")
    assert call(tbsim, "POST", "provision", bad)[1]["status"] == "NOT_FOUND"
