# The Device API over MQTT and MQTTS on the unix port against tbsim --mqtt-port (docs/wire-mqtt.md):
# every uplink operation, attribute requests, client-side RPC, claiming, shared-attribute updates and
# server-side RPC, a callback that raises, TLS with a token and with an X.509 client certificate,
# MQTT_BASIC, refused credentials, OTA chunks and provisioning over MQTT; then faults: a tbsim restart,
# connections reset and made half-open through tests/tcpproxy.py. Waits are on the device's events
# and tbsim's log, never on a clock.
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import mpy
from tbtest import REPO, free_port, wait_until
from tcpproxy import TcpProxy
from test_http_device import latest, upload_and_assign

HEAP = "256K"  # compiling from source; boards run .mpy (tools/min-heap mqtt gives the board figure)
SCRIPT = "tests/integration/mpy/mqtt_device.py"


def _tls(tls_dir, *names):
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "tools"))
    subprocess.run([sys.executable, "-m", "tbsim.tls", str(tls_dir), *names], check=True, env=env,
                   capture_output=True)


@pytest.fixture
def sim(tbsim_factory, tmp_path):
    # a client RPC without a rule-chain reply gets {"error":"timeout"} after 1 s, not ThingsBoard's 60
    return tbsim_factory("--mqtt-port", "0", "--client-rpc-timeout-ms", "1000", "--provision-close-ms", "2000")


def spec(sim, port=None, **extra):
    s = {"host": "127.0.0.1", "transport": "mqtt", "token": sim.token, "port": port or sim.mqtt_port,
         "mqtt": {"timeout_ms": 3000}}
    s.update(extra)
    return s


def spec_file(s):
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(s, f)
    return path


class Running:
    """mqtt_device.py in the background; .events are its JSON lines."""

    def __init__(self, s):
        env = dict(os.environ, MICROPYPATH=mpy.PATH)
        self.path = spec_file(s)
        self.proc = subprocess.Popen([mpy.MICROPYTHON, "-X", "heapsize=" + HEAP, SCRIPT, self.path],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=mpy.ROOT)
        self.events = []
        self.raw = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.raw.append(line)
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def mark(self):
        return len(self.events)

    def wait(self, pred, timeout=15, start=0):
        return wait_until(lambda: next((e for e in list(self.events)[start:] if pred(e)), None), timeout)

    def op(self, name, timeout=15, start=0):
        return self.wait(lambda e: e["ev"] == "op" and e["op"] == name, timeout, start)

    def logged(self, text, timeout=15, start=0):
        return self.wait(lambda e: e["ev"] == "log" and text in e["text"], timeout, start)

    def end(self, timeout=30):
        e = self.wait(lambda e: e["ev"] == "end", timeout)
        self.proc.wait(timeout=10)
        self._t.join(timeout=2)
        return e

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._t.join(timeout=2)
        os.unlink(self.path)

    def output(self):
        return "".join(self.raw)


@pytest.fixture
def device():
    started = []

    def start(s):
        d = Running(s)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def run(device, s, timeout=60):
    d = device(s)
    assert d.end(timeout), d.output()
    return [e for e in d.events if e["ev"] == "op"], d


def rpc(sim, method, params=None, timeout_ms=5000, name=None):
    did = sim.rest.device_id(name or sim.device_name)
    return sim.rest.request("POST", "/api/plugins/rpc/twoway/" + did,
                            {"method": method, "params": params or {}, "timeout": timeout_ms},
                            timeout=timeout_ms / 1000 + 5)


def set_shared(sim, values, name=None):
    did = sim.rest.device_id(name or sim.device_name)
    sim.rest.post("/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % did, values)


def client_attrs(sim):
    did = sim.rest.device_id(sim.device_name)
    return {a["key"]: a["value"] for a in sim.rest.get(
        "/api/plugins/telemetry/DEVICE/%s/values/attributes/CLIENT_SCOPE" % did)}


# ---- every operation ------------------------------------------------------------------------

def test_uplinks_requests_client_rpc_and_claim(sim, device):
    set_shared(sim, {"target": 21.5})
    ts = int(time.time() * 1000) - 60000
    ops, d = run(device, spec(sim, ops=[
        ["telemetry", {"temperature": 20.5, "n": 1}],
        ["telemetry", [{"ts": ts, "values": {"old": 7}}]],
        ["attributes", {"fw": "v1", "ok": True}],
        ["request", ["fw"], ["target"]],
        ["request", ["nope"], None],
        ["request", None, None],
        ["rpc", "echo", {"x": [1, 2]}],
        ["rpc", "nobodyAnswers", {}, 5000],
        ["rpc", "delay", {"ms": 3000}, 500],
        ["claim", "secret", 60000],
        ["telemetry", {"bad": {"$object": 1}}],
    ]))
    by = [(o["op"], o["ok"], o.get("result"), o.get("error")) for o in ops]
    assert by[0][:2] == ("telemetry", True) and by[1][:2] == ("telemetry", True), by
    assert by[2][:2] == ("attributes", True), by
    assert by[3][2] == {"client": {"fw": "v1"}, "shared": {"target": 21.5}}, by
    assert by[4][2] == {"client": {}, "shared": {}}, by  # {} over MQTT (wire-mqtt §5)
    assert by[5][2] == {"client": {"fw": "v1", "ok": True}, "shared": {"target": 21.5}}, by
    assert by[6][:3] == ("rpc", True, {"x": [1, 2]}), by
    # the server's own client-RPC timeout ({"error":"timeout"} after 1 s here) is a Timeout, as on CoAP
    assert by[7][1:] == (False, None, "Timeout"), by
    assert by[8][1:] == (False, None, "Timeout"), by  # ours ran out first
    assert by[9][:2] == ("claim", True), by
    assert ops[10]["ok"] is False and ops[10]["at"] == "call", ops[10]  # raised at the call, nothing sent
    got = latest(sim, ["temperature", "n", "old"])
    assert got == {"temperature": 20.5, "n": 1, "old": 7}, got
    assert client_attrs(sim) == {"fw": "v1", "ok": True}
    assert "claim" in sim.log_text() and "secretKey" in sim.log_text()
    logged = sim.log_text()
    assert "SUBSCRIBE" not in logged  # nothing subscribed: answers come at QoS 1 anyway (wire-mqtt §3.3)


def test_downlink_updates_rpc_and_raising_callbacks(sim, device, tmp_path):
    go = str(tmp_path / "go")
    set_shared(sim, {"mode": "eco"})
    d = device(spec(sim, subscribe=True, ops=[["wait_file", go]]))
    # no snapshot comes over MQTT: the link asks, and the first state is the whole of it
    assert d.wait(lambda e: e["ev"] == "ready"), d.output()
    assert d.wait(lambda e: e["ev"] == "attrs" and e["changed"] == {"mode": "eco"}), d.output()
    m = d.mark()
    set_shared(sim, {"mode": "boost", "n": 3})
    assert d.wait(lambda e: e["ev"] == "attrs" and e["changed"] == {"mode": "boost", "n": 3}, start=m), d.output()
    did = sim.rest.device_id(sim.device_name)
    sim.rest.delete("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did, keys="n")
    assert d.wait(lambda e: e["ev"] == "attrs" and e["deleted"] == ["n"], start=m), d.output()
    assert rpc(sim, "echo", {"a": 1}) == (200, {"a": 1})
    # a handler that raises: the caller gets the error, one log line, the loop goes on
    status, body = rpc(sim, "boom")
    assert status == 200 and body == {"error": "ValueError: boom"}, (status, body)
    assert d.logged("rpc: 'boom' raised ValueError: boom"), d.output()
    m = d.mark()
    set_shared(sim, {"crash_key": 1})
    assert d.logged("on_attribute('crash_key') raised ZeroDivisionError", start=m), d.output()
    assert d.wait(lambda e: e["ev"] == "attrs" and e["changed"] == {"crash_key": 1}, start=m), d.output()
    assert rpc(sim, "echo", {"a": 2}) == (200, {"a": 2})
    status, body = rpc(sim, "noSuchMethod")
    assert status == 200 and "unknown method" in body["error"], body
    # one-way RPC: delivered with the PUBACK
    status, _ = sim.rest.request("POST", "/api/plugins/rpc/oneway/" + did, {"method": "echo", "params": {"o": 1}})
    assert status == 200 and d.wait(lambda e: e["ev"] == "rpc" and e["params"] == {"o": 1}), d.output()
    open(go, "w").close()
    end = d.end()
    assert end["shared"] == {"mode": "boost", "crash_key": 1}, end
    assert "Traceback" not in d.output()
    log = sim.log_text()
    assert log.count("SUBSCRIBE v1/devices/me/attributes q1, v1/devices/me/rpc/request/+ q1") == 1, log
