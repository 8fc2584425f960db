# The device in protobuf mode (spec §11) on the unix port against tbsim's PROTOBUF profile: the profile's
# schemas compiled with tools/protoc.py for the device and given as text to tbsim (which compiles them with protoc).
import json
import os
import signal
import subprocess
import sys
import threading

import mpy
from tbtest import wait_until

PROTO = os.path.join(mpy.ROOT, "tests", "integration", "proto")
# The unix port compiles every module from source at boot (boards run .mpy): the whole firmware with the OTA
# and protobuf modules needs more than 256K that way, mostly for the compiler.
HEAP = os.environ.get("PB_HEAP", "384K")
SCHEMAS = (("telemetry", "app_telemetry.proto"), ("rpc_request", "app_rpc_request.proto"),
           ("rpc_response", "app_rpc_response.proto"))


def _sim(tbsim_factory):
    args = ["--protobuf-device", "Proto-1=PB_TOKEN"]
    for role, name in SCHEMAS:
        args += ["--protobuf-schema", "%s=%s" % (role, os.path.join(PROTO, name))]
    return tbsim_factory(*args)


def _compile(tmp_path):
    cmd = [sys.executable, os.path.join(mpy.ROOT, "tools", "protoc.py"), "-o", str(tmp_path / "appprofile.py")]
    for role, name in SCHEMAS:
        cmd += ["--" + role.replace("_", "-"), os.path.join(PROTO, name)]
    subprocess.run(cmd, check=True)
    return str(tmp_path)


def _env(folder):
    return {"MICROPYPATH": folder + ":" + mpy.PATH}


def _latest(sim, name, keys):
    dev = sim.rest.device_id(name)
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % dev, keys=",".join(keys),
                       useStrictDataTypes="true")
    return {k: v[0]["value"] for k, v in got.items() if v}


def _plan(sim, folder, ops, token="PB_TOKEN"):
    spec = {"host": "127.0.0.1", "port": sim.coap_port, "token": token, "ops": ops, "payload": "protobuf",
            "proto": "appprofile"}
    path = os.path.join(folder, "spec.json")
    with open(path, "w") as fh:
        json.dump(spec, fh)
    r = mpy.run(["tests/integration/mpy/plan.py", "@" + path], heap="160K", env=_env(folder))
    assert r.returncode == 0, r.stdout + r.stderr
    out = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(out) == len(ops), r.stdout + r.stderr
    return out


def test_device_api_in_protobuf_mode(tbsim_factory, tmp_path):
    sim = _sim(tbsim_factory)
    folder = _compile(tmp_path)
    did = sim.rest.device_id("Proto-1")
    sim.rest.post("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did, {"interval": 750, "mode": "eco"})
    out = _plan(sim, folder, [
        ["telemetry", {"temperature": 21.5, "humidity": 40.0, "current_fw_title": "pb-app", "boot_count": 2**40}],
        ["telemetry", {"not_in_schema": 1}],
        ["attributes", {"firmwareVersion": "v1.0-pb", "serialNumber": "SN-9"}],
        ["request", ["firmwareVersion"], ["interval", "mode"]],
        ["request", ["nothing"]],
        ["rpc", "echo", {"a": [1, 2]}],
        ["claim", "secret-pb", 60000],
        ["provision", sim.provision_key, sim.provision_secret, "pb-provisioned"],
        ["provision", sim.provision_key, "wrong", "pb-refused"],
    ])
    assert [o["ok"] for o in out] == [True, False, True, True, True, True, True, True, False], out
    assert out[1]["error"] == "SchemaMismatch" and "not_in_schema" in out[1]["message"]
    got = _latest(sim, "Proto-1", ["temperature", "humidity", "current_fw_title", "currentFwTitle", "boot_count",
                                   "bootCount"])
    # doubles stay doubles; keys are JSON names: json_name keeps current_fw_title, boot_count becomes bootCount
    # (lowerCamelCase); int64 is printed as a string and cast back to a long (spec §11.1)
    assert got == {"temperature": 21.5, "humidity": 40.0, "current_fw_title": "pb-app", "bootCount": 2**40}
    assert out[3]["result"] == {"client": {"firmwareVersion": "v1.0-pb"}, "shared": {"interval": 750, "mode": "eco"}}
    assert out[4]["result"] == {"client": {}, "shared": {}}  # 4.04 over CoAP: nothing found
    assert out[5]["result"] == {"a": [1, 2]}
    claim = sim.rest.request("POST", "/api/customer/device/Proto-1/claim", {"secretKey": "secret-pb"})
    assert claim[0] == 200, claim
    assert out[7]["result"]["token"] and out[8]["status"] == "NOT_FOUND"


class Firmware:
    def __init__(self, config, folder):
        env = dict(os.environ, **_env(folder))
        env["MICROPYPATH"] = ":".join([os.path.join(mpy.ROOT, p) for p in ("lib", "firmware", "boards/UNIX")]
                                      + [folder, ".frozen"])
        self.proc = subprocess.Popen([mpy.MICROPYTHON, "-X", "heapsize=" + HEAP, "firmware/main.py", config],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=mpy.ROOT)
        self.lines = []
        self._t = threading.Thread(target=lambda: self.lines.extend(l.rstrip("\n") for l in self.proc.stdout),
                                   daemon=True)
        self._t.start()

    def wait_for(self, text, timeout=10):
        return wait_until(lambda: next((l for l in list(self.lines) if text in l), None), timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout=10)
        self._t.join(timeout=2)
        return rc

    def output(self):
        return "\n".join(self.lines)


def test_reference_firmware_in_protobuf_mode(tbsim_factory, tmp_path):
    sim = _sim(tbsim_factory)
    folder = _compile(tmp_path)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"host": "127.0.0.1", "port": sim.coap_port, "token": "PB_TOKEN", "payload": "protobuf",
                               "proto": "appprofile", "state_dir": str(tmp_path), "telemetry_interval_ms": 300}))
    fw = Firmware(str(cfg), folder)
    try:
        got = wait_until(lambda: (lambda s: s if len(s) == 4 else None)(_latest(
            sim, "Proto-1", ["temperature", "humidity", "current_fw_title", "current_fw_version"])), 15)
        assert got, fw.output()
        assert isinstance(got["temperature"], float) and got["current_fw_title"] == "tb-micropython"
        did = sim.rest.device_id("Proto-1")
        assert fw.wait_for("rpc: subscription") is None  # the RPC subscription holds
        sim.rest.post("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did, {"telemetry_interval_ms": 400})
        assert fw.wait_for("telemetry interval: 400 ms"), fw.output()
        reply = sim.rest.post("/api/plugins/rpc/twoway/%s" % did, {"method": "setGpio", "params": {"pin": 2, "value": 1}})
        assert reply == {"pin": 2, "value": 1}, fw.output()
        reply = sim.rest.post("/api/plugins/rpc/twoway/%s" % did, {"method": "getStatus", "params": {}})
        status = json.loads(reply["payload"])  # does not fit pin/value: JSON text in payload
        assert status["fw_title"] == "tb-micropython" and status["rpc"] >= 1
    finally:
        rc = fw.stop()
    assert rc == 0, fw.output()
    assert "device: fatal" not in fw.output()


def test_a_value_no_payload_type_carries_raises_value_error_at_the_call(tbsim_factory, tmp_path):
    # Issue 15 item 7, protobuf profile: an object or bytes for a string or number field is the
    # caller's ValueError naming the key, as with JSON; nothing is sent.
    sim = _sim(tbsim_factory)
    folder = _compile(tmp_path)
    out = _plan(sim, folder, [
        ["telemetry", {"temperature": {"$object": 0}}],
        ["telemetry", {"humidity": 40.0, "current_fw_title": {"$bytes": "pb"}}],
        ["attributes", {"serialNumber": {"$bytes": "SN"}}],
        ["telemetry", {"temperature": 22.5}],
    ])
    for o, key in zip(out[:3], ("'temperature'", "'current_fw_title'", "'serialNumber'")):
        assert (o["ok"], o["error"], o["at"]) == (False, "ValueError", "call") and key in o["message"], o
    assert out[3]["ok"], out
    assert _latest(sim, "Proto-1", ["temperature", "humidity", "current_fw_title"]) == {"temperature": 22.5}
