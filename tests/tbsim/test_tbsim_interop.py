"""Real CoAP peers against tbsim, running the seed page's own commands (seeds/coap-device-api.txt):
libcoap's coap-client (Debian libcoap3-bin: coap-client-notls) and npm coap-cli (node_modules/.bin/coap)."""

import json
import os
import re
import shutil
import subprocess
import threading

import pytest

from tbtest import REPO, wait_until

LIBCOAP = shutil.which("coap-client-notls") or shutil.which("coap-client")
COAP_CLI = os.path.join(REPO, "node_modules", ".bin", "coap")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

needs_libcoap = pytest.mark.skipif(LIBCOAP is None, reason="libcoap coap-client not installed (apt libcoap3-bin)")
needs_coap_cli = pytest.mark.skipif(not os.path.exists(COAP_CLI) or shutil.which("node") is None,
                                    reason="npm coap-cli not installed (npm install --no-save coap-cli@0.7.1)")

# The seed page's files (telemetry-data-as-object.json, new-attributes-values.json, rpc-response.json, ...)
TELEMETRY_OBJECT = """{
  "stringKey": "value1",
  "booleanKey": true,
  "doubleKey": 42.0,
  "longKey": 73,
  "jsonKey": {
    "someNumber": 42,
    "someArray": [1,2,3],
    "someNestedObject": {"key": "value"}
  }
}"""
TELEMETRY_ARRAY = '[{"key1":"value1"}, {"key2":true}]'
TELEMETRY_TS = '{"ts": 1451649600512, "values": {"stringKey": "value1", "longKey": 73}}'
NEW_ATTRIBUTES = """{
  "attribute1": "value1",
  "attribute2": true,
  "attribute3": 42.0,
  "attribute4": 73,
  "attribute5": {
    "someNumber": 42,
    "someArray": [1,2,3],
    "someNestedObject": {"key": "value"}
  }
}"""
RPC_RESPONSE = '{"result":"ok"}'
RPC_CLIENT_REQUEST = '{"method": "getCurrentTime", "params": {}}'
CLAIM = '{"secretKey":"value", "durationMs":60000}'


def sh(cmd, cwd, timeout=15):
    """Run a shell command line as the page writes it; returns stdout+stderr without ANSI colours."""
    env = dict(os.environ, PATH=os.path.join(REPO, "node_modules", ".bin") + os.pathsep + os.environ["PATH"])
    out = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return _ANSI.sub("", out.stdout + out.stderr)


@pytest.fixture
def files(tmp_path):
    for name, text in [("telemetry-data-as-object.json", TELEMETRY_OBJECT),
                       ("telemetry-data-as-array.json", TELEMETRY_ARRAY),
                       ("telemetry-data-with-ts.json", TELEMETRY_TS),
                       ("new-attributes-values.json", NEW_ATTRIBUTES),
                       ("rpc-response.json", RPC_RESPONSE),
                       ("rpc-client-request.json", RPC_CLIENT_REQUEST),
                       ("claim.json", CLAIM)]:
        (tmp_path / name).write_text(text)
    return tmp_path


def libcoap(cmd):
    return cmd.replace("coap-client ", LIBCOAP + " ", 1)


def latest(sim, keys):
    did = sim.rest.device_id("Thermo-1")
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys=keys,
                       useStrictDataTypes="true")
    return {k: v[0]["value"] for k, v in got.items()}


@needs_coap_cli
def test_coap_cli_telemetry_attributes_client_rpc_claim_provision(tbsim, files):
    base = "coap://127.0.0.1:%d/api/v1" % tbsim.coap_port
    tok = base + "/" + tbsim.token
    out = sh("cat telemetry-data-as-object.json | coap post %s/telemetry" % tok, files)
    assert "(2.01)" in out
    assert latest(tbsim, "doubleKey,longKey,jsonKey") == {
        "doubleKey": 42.0, "longKey": 73, "jsonKey": {"someNumber": 42, "someArray": [1, 2, 3],
                                                      "someNestedObject": {"key": "value"}}}
    assert "(2.01)" in sh("cat telemetry-data-as-array.json | coap post %s/telemetry" % tok, files)
    assert "(2.01)" in sh("cat telemetry-data-with-ts.json | coap post %s/telemetry" % tok, files)
    assert latest(tbsim, "key1,key2") == {"key1": "value1", "key2": True}
    assert "(2.01)" in sh("cat new-attributes-values.json | coap post %s/attributes" % tok, files)
    out = sh("cat rpc-client-request.json | coap post %s/rpc" % tok, files)
    assert "(2.05)" in out and re.search(r'\{"time":\d{13}\}', out)
    assert "(2.01)" in sh("cat claim.json | coap post %s/claim" % tok, files)
    prov = '{"deviceName": "DEVICE_NAME", "provisionDeviceKey": "%s", "provisionDeviceSecret": "%s"}' % (
        tbsim.provision_key, tbsim.provision_secret)
    out = sh("echo '%s' | coap post %s/provision" % (prov, base), files)
    assert "(2.01)" in out and '"status":"SUCCESS"' in out and '"credentialsType":"ACCESS_TOKEN"' in out


@needs_coap_cli
def test_coap_cli_attribute_subscribe(tbsim, files):
    # coap-attributes-subscribe.sh: coap get -o coap://$HOST/api/v1/$ACCESS_TOKEN/attributes
    cmd = [COAP_CLI, "get", "-o", tbsim.coap_uri("api/v1/{token}/attributes")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        assert tbsim.wait_for_log("GET attributes Observe=0") is not None
        did = tbsim.rest.device_id("Thermo-1")
        tbsim.rest.post("/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % did, {"shared1": "on"})
        assert tbsim.wait_for_log(re.compile(r"NOTIFY attributes .* Observe=1 sent")) is not None
        assert wait_until(lambda: any('{"shared1":"on"}' in line for line in lines), timeout=20), lines
    finally:
        proc.terminate()
        proc.wait(5)
    text = _ANSI.sub("", "".join(lines))
    assert "(2.05)\t{}" in text  # the first response: all shared attributes, none yet


@needs_libcoap
def test_libcoap_attribute_request_with_query(tbsim, files):
    tok = "coap://127.0.0.1:%d/api/v1/%s" % (tbsim.coap_port, tbsim.token)
    sh(libcoap("coap-client -m post -f new-attributes-values.json %s/attributes" % tok), files)
    # coap-attributes-request.sh, with the page's result
    out = sh(libcoap('coap-client -m get "%s/attributes?clientKeys=attribute1,attribute2&sharedKeys=shared1,shared2"'
                     % tok), files)
    assert out.strip() == '{"client":{"attribute1":"value1","attribute2":true}}'
    out = sh(libcoap('coap-client -m get "%s/attributes?sharedKeys=shared1"' % tok), files)
    assert "4.04" in out  # nothing found: 4.04 with no payload (spec §6.1)


@needs_libcoap
def test_libcoap_rpc_subscribe_reply_and_server_rpc(tbsim, files):
    tok = "coap://127.0.0.1:%d/api/v1/%s" % (tbsim.coap_port, tbsim.token)
    # the page's "coap-client -m get .../rpc -s 100 -B 100", shortened
    sub = subprocess.Popen(libcoap("coap-client -m get %s/rpc -s 3 -B 3" % tok), shell=True, cwd=files,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result = []
    try:
        assert tbsim.wait_for_log("GET rpc Observe=0 Thermo-1 -> 2.03") is not None
        did = tbsim.rest.device_id("Thermo-1")
        t = threading.Thread(target=lambda: result.append(tbsim.rest.request(
            "POST", "/api/plugins/rpc/twoway/" + did, {"method": "connect", "params": {}})))
        t.start()
        assert tbsim.wait_for_log(re.compile(r"NOTIFY rpc Thermo-1 .*\"id\":1")) is not None
        out = sh(libcoap("coap-client -f rpc-response.json -m post %s/rpc/1" % tok), files)
        assert "4." not in out and "5." not in out
        t.join(10)
        assert result == [(200, {"result": "ok"})]  # what the RPC debug terminal shows
    finally:
        out, _ = sub.communicate(timeout=10)
    assert '{"id":1,"method":"connect","params":{}}' in out


@needs_libcoap
def test_libcoap_telemetry_client_rpc_claim_provision(tbsim, files):
    base = "coap://127.0.0.1:%d/api/v1" % tbsim.coap_port
    tok = base + "/" + tbsim.token
    out = sh(libcoap("coap-client -m post -f telemetry-data-as-object.json %s/telemetry" % tok), files)
    assert out.strip() == ""  # 2.01 with no payload
    assert latest(tbsim, "stringKey,booleanKey")["booleanKey"] is True
    out = sh(libcoap("coap-client -m post -f rpc-client-request.json %s/rpc" % tok), files)
    assert re.fullmatch(r'\{"time":\d{13}\}', out.strip())
    assert sh(libcoap("coap-client -m post -f claim.json %s/claim" % tok), files).strip() == ""
    prov = '{"deviceName":"DEVICE_NAME","provisionDeviceKey":"%s","provisionDeviceSecret":"%s"}' % (
        tbsim.provision_key, tbsim.provision_secret)
    out = sh(libcoap("coap-client -m post -e '%s' %s/provision" % (prov, base)), files)
    body = json.loads(out.strip())
    assert body["status"] == "SUCCESS" and body["credentialsType"] == "ACCESS_TOKEN"
    out = sh(libcoap("coap-client -m post -e '%s' %s/provision" % (prov, base)), files)
    assert '"status":"FAILURE"' in out  # the name exists now
    out = sh(libcoap("coap-client -m post -e '{}' %s/NOT_A_TOKEN/telemetry" % base), files)
    assert "4.01" in out


@needs_libcoap
def test_libcoap_block1_post(tbsim, files):
    (files / "big.json").write_text('{"big":"%s"}' % ("y" * 3000))
    tok = "coap://127.0.0.1:%d/api/v1/%s" % (tbsim.coap_port, tbsim.token)
    out = sh(libcoap("coap-client -m post -b 256 -f big.json %s/telemetry" % tok), files)
    assert "4." not in out and "5." not in out
    assert len(latest(tbsim, "big")["big"]) == 3000
