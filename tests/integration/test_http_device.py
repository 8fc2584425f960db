# The Device API over HTTP and HTTPS on the unix port against tbsim (spec §15): uplink
# operations, attribute updates and server-side RPC by long poll, firmware by chunks.
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import urllib.request
import uuid

import pytest

import mpy
from tbtest import wait_until

IMAGE = bytes(range(256)) * 12 + b"tail"  # 3076 bytes: three full 1000-byte chunks and a short one
HEAP = "256K"  # mbedTLS allocates outside the GC heap on this port; the room is for compiling from source


@pytest.fixture
def sim(tbsim_factory, tmp_path):
    # a client RPC nobody answers ends with 408 after 1.5 s, not ThingsBoard's 60 s
    return tbsim_factory("--https-port", "0", "--tls-dir", str(tmp_path / "tls"), "--http-request-timeout-ms", "1500")


def spec(sim, transport, **extra):
    s = {"host": "127.0.0.1", "transport": transport, "token": sim.token,
         "port": sim.https_port if transport == "https" else sim.http_port, "ca": sim.tls_ca}
    if transport == "https":
        s["host"] = "localhost"  # verified against the certificate's DNS name (its IP names work too)
    s.update(extra)
    return s


def spec_file(s):
    # a file, not an argument: this unix-port build aborts on an argument over 255 bytes
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(s, f)
    return path


def run(s, timeout=60):
    path = spec_file(s)
    try:
        r = mpy.run(["tests/integration/mpy/http_device.py", path], heap=HEAP, timeout=timeout)
    finally:
        os.unlink(path)
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def ops(events):
    return [e for e in events if e["ev"] == "op"]


class Running:
    """http_device.py in the background; collects its events."""

    def __init__(self, s):
        env = dict(os.environ, MICROPYPATH=mpy.PATH)
        self.proc = subprocess.Popen([mpy.MICROPYTHON, "-X", "heapsize=" + HEAP, "tests/integration/mpy/http_device.py",
                                      spec_file(s)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env, cwd=mpy.ROOT)
        self.events = []
        self.raw = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.raw.append(line)
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def wait(self, pred, timeout=10):
        return wait_until(lambda: next((e for e in list(self.events) if pred(e)), None), timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._t.join(timeout=2)

    def output(self):
        return "".join(self.raw)


def upload_and_assign(sim, data, title="tb-fw", version="1.1.0"):
    r = sim.rest
    profile = r.get("/api/tenant/devices", deviceName=sim.device_name)["deviceProfileId"]  # ThingsBoard needs it
    pkg = r.post("/api/otaPackage", {"title": title, "version": version, "type": "FIRMWARE",
                                     "deviceProfileId": profile})
    boundary = uuid.uuid4().hex
    body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"fw.bin\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n" % boundary).encode() + data +
            ("\r\n--%s--\r\n" % boundary).encode())
    req = urllib.request.Request(
        "%s/api/otaPackage/%s?checksumAlgorithm=SHA256" % (sim.http_url, pkg["id"]["id"]), data=body, method="POST",
        headers={"Content-Type": "multipart/form-data; boundary=" + boundary, "X-Authorization": "Bearer " + r.jwt})
    with urllib.request.urlopen(req, timeout=10) as resp:
        info = json.loads(resp.read())
    dev = r.get("/api/tenant/devices", deviceName=sim.device_name)
    dev["firmwareId"] = info["id"]
    r.post("/api/device", dev)


def latest(sim, keys):
    did = sim.rest.device_id(sim.device_name)
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys=",".join(keys),
                       useStrictDataTypes="true")
    return {k: v[0]["value"] for k, v in got.items() if v}


@pytest.mark.parametrize("transport", ["http", "https"])
def test_uplink_operations_and_firmware_chunks(sim, transport):
    did = sim.rest.device_id(sim.device_name)
    sim.rest.post("/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % did, {"target": 22.5})
    upload_and_assign(sim, IMAGE)
    out = ops(run(spec(sim, transport, ops=[
        ["telemetry", {"t": 21.5, "sum": 0.1 + 0.2, "n": 7}],
        ["telemetry", {"t": 1}, 1700000000000],
        ["attributes", {"serial": "SN-1"}],
        ["request", ["serial"], ["target"]],
        ["request", ["nope"], ["nothing"]],
        ["rpc", "echo", {"x": [1, 2]}],
        ["rpc", "getCurrentTime", None],
        ["rpc", "noSuchMethod", {}, 1000],
        ["claim", "s3cret", 60000],
        ["claim"],
        ["firmware", "tb-fw", "1.1.0", 1000],
        ["firmware", "tb-fw", "9.9.9", 1000],
        ["provision", sim.provision_key, sim.provision_secret, "http-dev-" + transport],
        ["provision", sim.provision_key, sim.provision_secret, "http-dev-" + transport],
        ["provision", sim.provision_key, "wrong", "http-dev-x"],
    ])))
    assert all(o["ok"] for o in out[:7]), out
    assert latest(sim, ["t", "sum", "n"]) == {"t": 21.5, "sum": 0.3, "n": 7}
    assert out[3]["result"] == {"client": {"serial": "SN-1"}, "shared": {"target": 22.5}}
    assert out[4]["result"] == {"client": {}, "shared": {}}  # `{}` over HTTP: none found, not an error
    assert out[5]["result"] == {"x": [1, 2]}
    assert isinstance(out[6]["result"]["time"], int)  # params null is sent: HTTP requires the key (spec §15)
    assert (out[7]["ok"], out[7]["error"]) == (False, "Timeout"), out[7]  # as over CoAP (spec §8)
    assert out[8]["ok"] and out[9]["ok"], out
    assert out[10]["result"] == {"bytes": len(IMAGE), "chunks": 4, "sha256": hashlib.sha256(IMAGE).hexdigest()}
    assert (out[11]["error"], out[11]["code"]) == ("BadRequest", 400), out[11]  # version mismatch (spec §10.3)
    assert out[12]["ok"] and len(out[12]["result"]["token"]) >= 10, out[12]
    assert (out[13]["error"], out[13]["status"]) == ("ProvisionError", "FAILURE")  # HTTP 200 + status (spec §9)
    assert (out[14]["error"], out[14]["status"]) == ("ProvisionError", "NOT_FOUND")


def test_a_value_json_cannot_carry_raises_at_the_call_and_nothing_is_sent(sim):
    # Issue 15 item 7 over HTTP: the same calls as over CoAP (test_device_api.BAD_VALUES).
    from test_device_api import BAD_VALUES, refused_at_the_call

    refused_at_the_call(ops(run(spec(sim, "http", ops=BAD_VALUES))))
    assert latest(sim, ["t", "ok", "raw", "after"]) == {"after": 1}
    assert not [x for x in sim.lines if "telemetry" in x and "-> 400" in x], sim.log_text()


def test_bad_token_keeps_the_http_status(sim):
    out = ops(run(spec(sim, "http", token="WRONG_TOKEN", ops=[["telemetry", {"a": 1}], ["request", ["a"]]])))
    assert [(o["error"], o["code"]) for o in out] == [("Unauthorized", 401)] * 2, out


@pytest.mark.parametrize("transport", ["http", "https"])
def test_attribute_updates_and_server_rpc_by_long_poll(sim, transport):
    did = sim.rest.device_id(sim.device_name)
    attrs = "/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % did
    sim.rest.post(attrs, {"interval": 5})  # set before the device starts: arrives as the initial state
    # poll_ms 1500: tbsim answers 408 at the end of each poll, and the device polls again
    dev = Running(spec(sim, transport, subscribe=True, run_ms=30000, http={"poll_ms": 1500}))
    try:
        assert dev.wait(lambda e: e["ev"] == "ready"), dev.output()
        assert dev.wait(lambda e: e["ev"] == "attrs" and e["changed"] == {"interval": 5}), dev.output()
        mark = sim.mark()
        assert sim.wait_for_log("GET attributes/updates Thermo-1 -> 408", start=mark, timeout=10), sim.log_text()
        # An update made while no poll waits is not queued by the server (spec §15), and the server
        # does not say when a poll begins: posted again until the device has it (the device's event),
        # rather than once after a guessed moment.
        for _ in range(10):
            sim.rest.post(attrs, {"mode": "eco"})
            if dev.wait(lambda e: e["ev"] == "attrs" and e["changed"] == {"mode": "eco"}, 3):
                break
        assert dev.wait(lambda e: e["ev"] == "attrs" and e["changed"] == {"mode": "eco"}, 1), dev.output()
        status, body = sim.rest.request("POST", "/api/plugins/rpc/twoway/" + did,
                                        {"method": "echo", "params": {"pin": 23, "value": 1}})
        assert (status, body) == (200, {"pin": 23, "value": 1}), dev.output()
        status, body = sim.rest.request("POST", "/api/plugins/rpc/twoway/" + did, {"method": "nope", "params": {}})
        assert status == 200 and "unknown method" in body["error"]
        sim.rest.delete(attrs, keys="interval")
        assert dev.wait(lambda e: e["ev"] == "attrs" and e["deleted"] == ["interval"]), dev.output()
    finally:
        dev.stop()


def test_https_refuses_a_server_from_another_ca(sim, tmp_path):
    from tbsim.tls import ensure

    other = ensure(str(tmp_path / "other"))["ca"]
    s = spec(sim, "https", ca=other, http={"timeout_ms": 2000}, ops=[["telemetry", {"never": 1}]])
    dev = Running(s)
    try:
        assert dev.wait(lambda e: e["ev"] == "log" and "TlsError" in e["text"], 10), dev.output()
    finally:
        dev.stop()
    assert "never" not in latest(sim, ["never"])
    assert "never" not in sim.log_text()  # not one request got through the handshake
