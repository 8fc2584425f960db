"""The seed page's curl commands (seeds/http-device-api.txt) against tbsim, over HTTP and HTTPS
(`--cacert` with tbsim's test CA), with the results the page shows."""

import json
import os
import re
import shutil
import subprocess
import threading

import pytest

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl not installed")

# The page's resource files
FILES = {
    "telemetry-data-as-object.json": """{
  "stringKey": "value1",
  "booleanKey": true,
  "doubleKey": 42.0,
  "longKey": 73,
  "jsonKey": {
    "someNumber": 42,
    "someArray": [1,2,3],
    "someNestedObject": {"key": "value"}
  }
}""",
    "telemetry-data-as-array.json": '[{"key1":"value1"}, {"key2":true}]',
    "telemetry-data-with-ts.json": """{
  "ts": 1451649600512,
  "values": {
    "stringKey": "value1",
    "booleanKey": true,
    "doubleKey": 42.0,
    "longKey": 73,
    "jsonKey": {
      "someNumber": 42,
      "someArray": [1, 2, 3],
      "someNestedObject": {
        "key": "value"
      }
    }
  }
}""",
    "new-attributes-values.json": """{
  "attribute1": "value1",
  "attribute2": true,
  "attribute3": 42.0,
  "attribute4": 73,
  "attribute5": {
    "someNumber": 42,
    "someArray": [1,2,3],
    "someNestedObject": {"key": "value"}
  }
}""",
    "rpc-response.json": '{"result":"ok"}',
    "rpc-client-request.json": '{"method": "getCurrentTime", "params": {}}',
}


@pytest.fixture
def sim(tbsim_factory, tmp_path):
    return tbsim_factory("--https-port", "0", "--tls-dir", str(tmp_path / "tls"))


@pytest.fixture(params=["http", "https"])
def page(request, sim, tmp_path):
    """Runs a command line as the page writes it, with the page's host replaced by tbsim's."""
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    if request.param == "http":
        host, extra = "http://127.0.0.1:%d" % sim.http_port, ""
    else:
        host, extra = "https://localhost:%d" % sim.https_port, "--cacert %s " % sim.tls_ca

    def sh(cmd, timeout=30):
        cmd = cmd.replace("$ACCESS_TOKEN", sim.token).replace("https://$THINGSBOARD_HOST_NAME", host)
        cmd = cmd.replace("http://$THINGSBOARD_HOST_NAME", host).replace("curl ", "curl -sS %s" % extra, 1)
        r = subprocess.run(cmd, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
        return r.stdout, r.stderr

    return sh


def latest(sim, keys):
    did = sim.rest.device_id(sim.device_name)
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys=keys,
                       useStrictDataTypes="true")
    return {k: v[0] for k, v in got.items()}


def status(err):
    m = re.search(r"< HTTP/1\.1 (\d{3})", err)
    return int(m.group(1)) if m else None


def test_telemetry_upload(sim, page):
    # Example 1. The page's `--data "{"temperature":42,"humidity":73}"` loses its inner quotes in a
    # shell and only Gson's lenient parser reads the result; tbsim parses strict JSON (its README),
    # so the command carries the telemetry data the page shows, in single quotes.
    out, err = page("""curl -v -X POST --data '{"temperature":42,"humidity":73}' """
                    """http://$THINGSBOARD_HOST_NAME/api/v1/$ACCESS_TOKEN/telemetry --header "Content-Type:application/json\"""")
    assert status(err) == 200 and out == ""
    got = latest(sim, "temperature,humidity")
    assert (got["temperature"]["value"], got["humidity"]["value"]) == (42, 73)
    for name in ("telemetry-data-as-object.json", "telemetry-data-as-array.json", "telemetry-data-with-ts.json"):
        out, err = page("curl -v -X POST -d @%s http://$THINGSBOARD_HOST_NAME/api/v1/$ACCESS_TOKEN/telemetry "
                        "--header \"Content-Type:application/json\"" % name)
        assert status(err) == 200, (name, err)
    got = latest(sim, "doubleKey,longKey,jsonKey,key1,key2,stringKey")
    assert got["doubleKey"]["value"] == 42.0 and got["longKey"]["value"] == 73
    assert got["jsonKey"]["value"] == {"someNumber": 42, "someArray": [1, 2, 3], "someNestedObject": {"key": "value"}}
    assert (got["key1"]["value"], got["key2"]["value"]) == ("value1", True)
    did = sim.rest.device_id(sim.device_name)
    hist = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys="stringKey", startTs="0",
                        endTs="1500000000000", limit="5")
    assert [p["ts"] for p in hist["stringKey"]] == [1451649600512]  # the client timestamp of Example 4


def test_attributes_publish_and_request(sim, page):
    out, err = page("""curl -v -X POST --data '{"attribute1": "value1", "attribute2":true, "attribute3": 43.0}' """
                    """http://$THINGSBOARD_HOST_NAME/api/v1/$ACCESS_TOKEN/attributes --header "Content-Type:application/json\"""")
    assert status(err) == 200
    out, err = page("curl -v -X POST -d @new-attributes-values.json http://$THINGSBOARD_HOST_NAME/api/v1/"
                    "$ACCESS_TOKEN/attributes --header \"Content-Type:application/json\"")
    assert status(err) == 200
    out, err = page('curl -v -X GET "http://$THINGSBOARD_HOST_NAME/api/v1/$ACCESS_TOKEN/attributes'
                    '?clientKeys=attribute1,attribute2&sharedKeys=shared1,shared2"')
    assert out == '{"client":{"attribute1":"value1","attribute2":true}}'  # the page's result, byte for byte
    out, _ = page('curl "http://$THINGSBOARD_HOST_NAME/api/v1/$ACCESS_TOKEN/attributes?sharedKeys=shared1"')
    assert out == "{}"  # nothing found (spec §15)


def test_attribute_updates_long_poll(sim, page):
    got = []
    t = threading.Thread(target=lambda: got.append(page(
        "curl -v -X GET http://$THINGSBOARD_HOST_NAME/api/v1/$ACCESS_TOKEN/attributes/updates?timeout=20000")))
    t.start()
    did = sim.rest.device_id(sim.device_name)
    # The poll must be waiting: an update made before it is not queued (spec §15). Nothing says when
    # curl's request has arrived, so the update is posted again until the poll has answered.
    for _ in range(40):
        sim.rest.post("/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % did, {"shared1": "on"})
        t.join(0.5)
        if not t.is_alive():
            break
    t.join(25)
    out, err = got[0]
    # The page shows the attribute request's result here by mistake; a server sends the changed
    # shared attributes, flat (spec §15).
    assert status(err) == 200 and json.loads(out) == {"shared1": "on"}
    out, err = page("curl -v -X GET http://$THINGSBOARD_HOST_NAME/api/v1/$ACCESS_TOKEN/attributes/updates?timeout=300")
    assert status(err) == 408 and out == ""  # nothing yet: poll again


def test_server_side_rpc(sim, page):
    got = []
    t = threading.Thread(target=lambda: got.append(page(
        "curl -v -X GET http://$THINGSBOARD_HOST_NAME/api/v1/$ACCESS_TOKEN/rpc?timeout=20000")))
    t.start()
    did = sim.rest.device_id(sim.device_name)
    result = []  # the RPC debug terminal's "connect"
    r = threading.Thread(target=lambda: result.append(sim.rest.request(
        "POST", "/api/plugins/rpc/twoway/" + did, {"method": "connect", "params": {}})))
    r.start()
    t.join(25)
    assert json.loads(got[0][0]) == {"id": 1, "method": "connect", "params": {}}
    out, err = page("curl -v -X POST -d @rpc-response.json http://$THINGSBOARD_HOST_NAME/api/v1/$ACCESS_TOKEN/rpc/1 "
                    "--header \"Content-Type:application/json\"")
    assert status(err) == 200
    r.join(10)
    assert result == [(200, {"result": "ok"})]  # "You should receive a response from the device"


def test_client_side_rpc_claim_provision(sim, page):
    out, _ = page("curl -X POST -d @rpc-client-request.json http://$THINGSBOARD_HOST_NAME/api/v1/$ACCESS_TOKEN/rpc "
                  "--header \"Content-Type:application/json\"")
    assert re.fullmatch(r'\{"time":\d{13}\}', out), out  # tbsim's rule chain answers in epoch ms
    out, err = page("""curl -v -X POST -d '{"secretKey":"value", "durationMs":60000}' """
                    "http://$THINGSBOARD_HOST_NAME/api/v1/$ACCESS_TOKEN/claim")
    assert status(err) == 200
    body = json.dumps({"deviceName": "DEVICE_NAME", "provisionDeviceKey": sim.provision_key,
                       "provisionDeviceSecret": sim.provision_secret})
    out, err = page("curl -v -X POST -d '%s' http://$THINGSBOARD_HOST_NAME/api/v1/provision" % body)
    assert status(err) == 200 and json.loads(out)["status"] == "SUCCESS"
    out, err = page("curl -v -X POST -d '%s' http://$THINGSBOARD_HOST_NAME/api/v1/provision" % body)
    assert status(err) == 200 and json.loads(out)["status"] == "FAILURE"  # 200 even so (spec §9)
    out, err = page("curl -v -X POST -d '{}' http://$THINGSBOARD_HOST_NAME/api/v1/BAD_TOKEN/telemetry")
    assert status(err) == 401 and out == ""
