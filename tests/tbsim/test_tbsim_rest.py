"""The REST subset (ThingsBoard paths and shapes), the CLI, and the SQLite file."""

import os
import signal
import subprocess
import sys
import uuid

from aiocoap.numbers import Code

from tbtest import REPO, RestClient, as_from_a_terminal
from tbsim_wire import RawPeer


def test_login_required_and_device_crud(tbsim):
    status, body = tbsim.rest.request("GET", "/api/tenant/devices", query={"deviceName": "Thermo-1"}, auth=False)
    assert status == 401 and body["status"] == 401
    bad = RestClient(tbsim.http_url, password="wrong")
    assert bad.request("POST", "/api/auth/login", {"username": bad.username, "password": "wrong"},
                       auth=False)[0] == 401
    r = tbsim.rest
    dev = r.post("/api/device", {"name": "Pump-7", "type": "pump"}, accessToken="PUMP7_TOKEN")
    assert dev["id"]["entityType"] == "DEVICE" and uuid.UUID(dev["id"]["id"])
    assert dev["name"] == "Pump-7" and dev["type"] == "pump" and isinstance(dev["createdTime"], int)
    did = dev["id"]["id"]
    assert r.get("/api/device/" + did)["name"] == "Pump-7"
    assert r.get("/api/tenant/devices", deviceName="Pump-7")["id"]["id"] == did
    cred = r.get("/api/device/%s/credentials" % did)
    assert cred["credentialsType"] == "ACCESS_TOKEN" and cred["credentialsId"] == "PUMP7_TOKEN"
    assert r.request("POST", "/api/device", {"name": "Pump-7"})[0] == 400
    page = r.get("/api/tenant/devices", pageSize="1", page="0")
    assert page["totalElements"] == 2 and page["totalPages"] == 2 and page["hasNext"] is True
    p = RawPeer(tbsim.coap_port)
    try:
        assert p.exchange(Code.POST, "api/v1/PUMP7_TOKEN/telemetry", '{"flow":3}').code == Code.CREATED
        p.request(Code.GET, "api/v1/PUMP7_TOKEN/attributes", observe=0, token=b"pa")
        assert p.recv().opt.observe == 0
        r.delete("/api/device/" + did)
        bye = p.recv()
        assert bye.code == Code.DELETED and bye.token == b"pa"  # server ends the subscription (spec §6.4)
        p.ack(bye)
        assert p.exchange(Code.POST, "api/v1/PUMP7_TOKEN/telemetry", '{"flow":3}').code == Code.UNAUTHORIZED
    finally:
        p.close()
    assert r.request("GET", "/api/device/" + did)[0] == 404


def test_device_profile_with_provisioning(tbsim):
    r = tbsim.rest
    prof = r.post("/api/deviceProfile", {
        "name": "Sensors", "type": "DEFAULT", "transportType": "DEFAULT", "provisionType": "ALLOW_CREATE_NEW_DEVICES",
        "provisionDeviceKey": "sens-key",
        "profileData": {"configuration": {"type": "DEFAULT"}, "transportConfiguration": {"type": "DEFAULT"},
                        "provisionConfiguration": {"type": "ALLOW_CREATE_NEW_DEVICES",
                                                   "provisionDeviceSecret": "sens-secret"}}})
    assert prof["id"]["entityType"] == "DEVICE_PROFILE" and prof["provisionDeviceKey"] == "sens-key"
    names = [p["name"] for p in r.get("/api/deviceProfiles", pageSize="10", page="0")["data"]]
    assert "Sensors" in names and "default" in names
    p = RawPeer(tbsim.coap_port)
    try:
        resp = p.exchange(Code.POST, "api/v1/provision",
                          '{"deviceName":"S-1","provisionDeviceKey":"sens-key","provisionDeviceSecret":"sens-secret"}')
        assert resp.code == Code.CREATED
    finally:
        p.close()
    dev = r.get("/api/tenant/devices", deviceName="S-1")
    assert dev["deviceProfileId"]["id"] == prof["id"]["id"]


def test_attribute_rest_scopes_and_values(tbsim):
    r = tbsim.rest
    did = r.device_id("Thermo-1")
    r.post("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did, {"interval": 5000, "mode": "eco"})
    r.post("/api/plugins/telemetry/DEVICE/%s/attributes/SERVER_SCOPE" % did, {"srv": 1.5})
    shared = r.get("/api/plugins/telemetry/DEVICE/%s/values/attributes/SHARED_SCOPE" % did)
    assert {a["key"]: a["value"] for a in shared} == {"interval": 5000, "mode": "eco"}
    assert all(isinstance(a["lastUpdateTs"], int) for a in shared)
    every = r.get("/api/plugins/telemetry/DEVICE/%s/values/attributes" % did, keys="mode,srv")
    assert sorted(a["key"] for a in every) == ["mode", "srv"]
    status, _ = r.request("POST", "/api/plugins/telemetry/DEVICE/%s/attributes/CLIENT_SCOPE" % did, {"x": 1})
    assert status == 400
    r.delete("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did, keys="mode")
    shared = r.get("/api/plugins/telemetry/DEVICE/%s/values/attributes/SHARED_SCOPE" % did)
    assert [a["key"] for a in shared] == ["interval"]


def _run(args, **kw):
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "tools"))
    return subprocess.Popen([sys.executable, "-m", "tbsim", "--coap-port", "0", "--http-port", "0"] + args,
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=as_from_a_terminal, **kw)


def test_cli_sqlite_file_persists_and_sigint_exits_cleanly(tmp_path):
    db = str(tmp_path / "sub" / "tbsim.sqlite")
    for _ in range(2):  # the second start finds the device and keeps its token
        proc = _run(["--db", db, "--device", "Keep-1=KEEP_TOKEN", "--quiet"])
        banner = proc.stdout.readline()
        assert banner.startswith("tbsim: CoAP coap://127.0.0.1:") and db in banner
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "tbsim: stopped" in out and "Traceback" not in out
    assert os.path.exists(db)
    proc = _run(["--db", db, "--device", "Keep-1=OTHER_TOKEN"])
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode != 0 and "another token" in out
