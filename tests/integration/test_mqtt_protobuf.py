# The Device API and the reference firmware over MQTT with a PROTOBUF device profile (wire-mqtt §12.2) on the
# unix port against tbsim --mqtt-port: telemetry and client attributes in the profile's schemas, attribute
# requests, shared-attribute updates, client-side RPC, claim and provisioning in ThingsBoard's built-in messages,
# server-side RPC in the profile's RPC request and reply schemas; each checked through tbsim's REST API and log;
# a value the schema cannot carry is refused at the call and a sample of the app's alone. The profile is made as
# ThingsBoard's REST API makes one (an MQTT transport configuration); the device's schema module is compiled
# from the same .proto files with tools/protoc.py.
import json
import os
import subprocess
import sys

import pytest

import mpy
from tbtest import wait_until
from test_mqtt_device import device, rpc, run, set_shared, spec  # noqa: F401 (device: a fixture)
from test_protobuf_device import PROTO, Firmware, _latest

NAME, TOKEN = "PbMqtt-1", "PB_MQTT_TOKEN"
# The profile's schemas: the reference app's telemetry and RPC (tests/integration/proto); client attributes
# keep the default schema of spec §11.1 (firmwareVersion, serialNumber).
APP = (("telemetry", "app_telemetry.proto"), ("rpc_request", "app_rpc_request.proto"),
       ("rpc_response", "app_rpc_response.proto"))
_REST_KEY = {"telemetry": "deviceTelemetryProtoSchema", "rpc_request": "deviceRpcRequestProtoSchema",
             "rpc_response": "deviceRpcResponseProtoSchema"}
HEAP = os.environ.get("PB_HEAP", "384K")  # the protobuf modules are compiled from source here (boards run .mpy)


@pytest.fixture
def sim(tbsim_factory):
    return tbsim_factory("--mqtt-port", "0", "--client-rpc-timeout-ms", "1000", "--provision-close-ms", "2000")


def profile(sim, schemas=APP, name="mqtt-protobuf"):
    """A device NAME/TOKEN in an MQTT device profile of payload type PROTOBUF with these schemas (the others
    ThingsBoard's defaults)."""
    cfg = {"transportPayloadType": "PROTOBUF"}
    for role, file in schemas:
        with open(os.path.join(PROTO, file)) as f:
            cfg[_REST_KEY[role]] = f.read()
    p = sim.rest.post("/api/deviceProfile", {"name": name, "transportType": "MQTT", "profileData": {
        "transportConfiguration": {"type": "MQTT", "transportPayloadTypeConfiguration": cfg}}})
    sim.rest.post("/api/device", {"name": NAME, "deviceProfileId": p["id"]}, accessToken=TOKEN)


def compiled(tmp_path, schemas=APP):
    """The device's module `appprofile` of these schemas, in a folder for MICROPYPATH."""
    cmd = [sys.executable, os.path.join(mpy.ROOT, "tools", "protoc.py"), "-o", str(tmp_path / "appprofile.py")]
    for role, file in schemas:
        cmd += ["--" + role.replace("_", "-"), os.path.join(PROTO, file)]
    subprocess.run(cmd, check=True)
    return str(tmp_path)


def pb_spec(sim, **extra):
    return spec(sim, token=TOKEN, payload="protobuf", proto="appprofile", **extra)


def test_uplinks_attribute_requests_and_client_rpc(sim, device, tmp_path):
    profile(sim)
    set_shared(sim, {"interval": 750, "mode": "eco"}, name=NAME)
    ops, d = run(device, pb_spec(sim, ops=[
        ["telemetry", {"temperature": 21.5, "humidity": 40.0, "current_fw_title": "pb-mqtt", "boot_count": 2**40}],
        ["telemetry", {"not_in_schema": 1}],
        ["attributes", {"firmwareVersion": "v1.0-pb", "serialNumber": "SN-9"}],
        ["request", ["firmwareVersion"], ["interval", "mode"]],
        ["request", ["nothing"], None],
        ["request", None, None],
        ["rpc", "echo", {"a": [1, 2]}],
        ["rpc", "nobodyAnswers", {}, 5000],
        ["claim", "secret-pb", 60000],
        ["telemetry", {"temperature": 22.5}],
        # a ProvisionDeviceRequestMsg, answered in kind (wire-mqtt §10)
        ["provision", sim.provision_key, sim.provision_secret, "pb-mqtt-provisioned"],
        ["provision", sim.provision_key, "wrong", "pb-mqtt-refused"],
    ], mqtt={"timeout_ms": 3000}), path=compiled(tmp_path), heap=HEAP)
    by = [(o["op"], o["ok"], o.get("result"), o.get("error")) for o in ops]
    assert [o["ok"] for o in ops] == [True, False, True, True, True, True, True, False, True, True, True, False], by
    # a key the schema has no field for: refused at the call, nothing sent (the connection stays up)
    assert (ops[1]["error"], ops[1]["at"]) == ("SchemaMismatch", "call") and "not_in_schema" in ops[1]["message"]
    assert by[3][2] == {"client": {"firmwareVersion": "v1.0-pb"}, "shared": {"interval": 750, "mode": "eco"}}, by
    assert by[4][2] == {"client": {}, "shared": {}}, by
    assert by[5][2] == {"client": {"firmwareVersion": "v1.0-pb", "serialNumber": "SN-9"},
                        "shared": {"interval": 750, "mode": "eco"}}, by
    assert by[6][2] == {"a": [1, 2]}, by  # transportapi.RpcRequest up, transport.ToServerRpcResponseMsg down
    assert by[7][3] == "Timeout", by  # the server's own timeout, its error field "timeout" (wire-mqtt §8)
    got = _latest(sim, NAME, ["temperature", "humidity", "current_fw_title", "bootCount"])
    # the last sample, stored with server time; int64 comes as a string and is cast back to a long (spec §11.1)
    assert got == {"temperature": 22.5, "humidity": 40.0, "current_fw_title": "pb-mqtt", "bootCount": 2**40}, got
    did = sim.rest.device_id(NAME)
    attrs = {a["key"]: a["value"] for a in sim.rest.get(
        "/api/plugins/telemetry/DEVICE/%s/values/attributes/CLIENT_SCOPE" % did)}
    assert attrs == {"firmwareVersion": "v1.0-pb", "serialNumber": "SN-9"}, attrs
    assert ops[10]["result"]["token"] and ops[11]["status"] == "NOT_FOUND", ops[10:]
    assert "pb-mqtt-provisioned" in sim.log_text() and "/provision/response <protobuf>" in sim.log_text()
    claim = sim.rest.request("POST", "/api/customer/device/%s/claim" % NAME, {"secretKey": "secret-pb"})
    assert claim[0] == 200, claim
    log = sim.log_text()
    assert "malformed" not in log and "connection lost" not in d.output(), log
    assert d.end()["reconnects"] == 0


def test_shared_updates_and_server_rpc(sim, device, tmp_path):
    profile(sim)
    go = str(tmp_path / "go")
    set_shared(sim, {"mode": "eco"}, name=NAME)
    d = device(pb_spec(sim, subscribe=True, ops=[["wait_file", go]]), path=compiled(tmp_path), heap=HEAP)
    assert d.wait(lambda e: e["ev"] == "ready"), d.output()
    # the first state: the attribute request's GetAttributeResponseMsg, taken whole
    assert d.wait(lambda e: e["ev"] == "attrs" and e["changed"] == {"mode": "eco"}), d.output()
    m = d.mark()
    set_shared(sim, {"mode": "boost", "n": 3}, name=NAME)  # an AttributeUpdateNotificationMsg
    assert d.wait(lambda e: e["ev"] == "attrs" and e["changed"] == {"mode": "boost", "n": 3}, start=m), d.output()
    did = sim.rest.device_id(NAME)
    sim.rest.delete("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did, keys="n")
    assert d.wait(lambda e: e["ev"] == "attrs" and e["deleted"] == ["n"], start=m), d.output()
    # server-side RPC: the profile's RpcRequestMsg (params as a message), the reply in its RpcResponseMsg
    assert rpc(sim, "echo", {"pin": 4, "value": 1}, name=NAME) == (200, {"pin": 4, "value": 1}), d.output()
    # a reply the schema cannot hold goes as JSON text in its string field (spec §11.1)
    status, body = rpc(sim, "boom", name=NAME)
    assert status == 200 and json.loads(body["payload"]) == {"error": "ValueError: boom"}, (status, body)
    assert d.logged("rpc: 'boom' raised ValueError: boom"), d.output()
    # an RPC that does not fit the profile's request schema never reaches the device: the caller gets an error
    # (tbsim renders the FAILED RPC as 504, as over CoAP) and, unlike CoAP, the subscription stays (wire-mqtt §7)
    m = d.mark()
    status, body = rpc(sim, "echo", {"pin": "not a number"}, name=NAME)
    assert status == 504, (status, body)
    assert rpc(sim, "echo", {"pin": 5, "value": 0}, name=NAME) == (200, {"pin": 5, "value": 0}), d.output()
    # (the device's line for it may come after its reply has reached the caller: waited for)
    assert d.wait(lambda e: e["ev"] == "rpc" and e["params"] == {"pin": 5, "value": 0}, start=m), d.output()
    assert [e["params"] for e in d.events[m:] if e["ev"] == "rpc"] == [{"pin": 5, "value": 0}], d.output()
    open(go, "w").close()
    end = d.end()
    assert end["shared"] == {"mode": "boost"} and end["reconnects"] == 0, end
    assert "Traceback" not in d.output()
    log = sim.log_text()
    assert log.count("SUBSCRIBE v1/devices/me/attributes q1, v1/devices/me/rpc/request/+ q1") == 1, log


def _firmware(sim, tmp_path, folder):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"host": "127.0.0.1", "transport": "mqtt", "port": sim.mqtt_port, "token": TOKEN,
                               "payload": "protobuf", "proto": "appprofile", "state_dir": str(tmp_path),
                               "telemetry_interval_ms": 300}))
    return Firmware(str(cfg), folder)


def test_reference_firmware_over_mqtt_in_protobuf_mode(sim, tmp_path):
    profile(sim)
    fw = _firmware(sim, tmp_path, compiled(tmp_path))
    try:
        keys = ["temperature", "humidity", "current_fw_title", "current_fw_version"]
        stored = wait_until(lambda: (lambda s: s if len(s) == 4 else None)(_latest(sim, NAME, keys)), 15)
        assert stored and stored["current_fw_title"] == "tb-micropython", fw.output()
        assert isinstance(stored["temperature"], float)
        did = sim.rest.device_id(NAME)
        sim.rest.post("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did, {"telemetry_interval_ms": 400})
        assert fw.wait_for("telemetry interval: 400 ms"), fw.output()
        assert rpc(sim, "setGpio", {"pin": 2, "value": 1}, name=NAME) == (200, {"pin": 2, "value": 1}), fw.output()
        status, reply = rpc(sim, "getStatus", name=NAME)
        status_body = json.loads(reply["payload"])  # does not fit pin/value: JSON text in payload
        assert status_body["fw_title"] == "tb-micropython" and status_body["rpc"] >= 1, status_body
    finally:
        rc = fw.stop()
    assert rc == 0, fw.output()
    assert "device: fatal" not in fw.output() and "samples refused" not in fw.output(), fw.output()


def test_a_sample_the_schema_cannot_carry_is_refused_alone(sim, tmp_path):
    # The profile keeps the default telemetry schema (temperature, humidity, innerObject): the app's
    # current_fw_* report does not fit. It is refused before anything is sent, with one log line, and not
    # queued (it would never fit); the samples after it go on, and the connection is never dropped for it.
    profile(sim, schemas=APP[1:], name="mqtt-protobuf-default-telemetry")
    fw = _firmware(sim, tmp_path, compiled(tmp_path, APP[1:]))
    try:
        line = fw.wait_for("telemetry failed: SchemaMismatch")
        assert line and "current_fw" in line and "queued" not in line, fw.output()
        assert wait_until(lambda: _latest(sim, NAME, ["temperature"]).get("temperature") is not None, 15), \
            fw.output()
        n = len(fw.lines)
        assert wait_until(lambda: sum("-> PUBACK" in l for l in fw.lines[n:]) >= 2, 15), fw.output()
    finally:
        rc = fw.stop()
    assert rc == 0, fw.output()
    out = fw.output()
    assert out.count("SchemaMismatch") == 1 and "samples refused" not in out and "connection lost" not in out, out
    assert "current_fw_title" not in _latest(sim, NAME, ["current_fw_title"])
    assert "malformed" not in sim.log_text()
