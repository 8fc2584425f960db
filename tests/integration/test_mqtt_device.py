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

    def __init__(self, s, path=None, heap=HEAP):
        # path: a folder put first on MICROPYPATH (a compiled profile schema module)
        env = dict(os.environ, MICROPYPATH=(path + ":" if path else "") + mpy.PATH)
        self.path = spec_file(s)
        self.proc = subprocess.Popen([mpy.MICROPYTHON, "-X", "heapsize=" + heap, SCRIPT, self.path],
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

    def start(s, **kw):
        d = Running(s, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def run(device, s, timeout=60, **kw):
    d = device(s, **kw)
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


# ---- credentials: TLS, X.509, MQTT_BASIC, refused ---------------------------------------------

X509_DEVICE = "x509-sensor"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    _tls(d / "tb", "known", "unknown")  # tbsim's CA and server certificate, two client certificates
    return d / "tb"


def test_mqtts_with_a_token_and_with_an_x509_certificate(tbsim_factory, pki, device):
    sim = tbsim_factory("--mqtts-port", "0", "--tls-dir", str(pki), "--x509-device",
                        "%s=%s" % (X509_DEVICE, pki / "known.pem"))
    tls = {"transport": "mqtts", "host": "localhost", "port": sim.mqtts_port, "ca": sim.tls_ca}
    ops, d = run(device, spec(sim, ops=[["telemetry", {"over": "tls"}], ["request", None, None]], **tls))
    assert [o["ok"] for o in ops] == [True, True], d.output()
    assert latest(sim, ["over"]) == {"over": "tls"}
    # the client certificate is the credentials: no token, no user name (wire-mqtt §2.2)
    x509 = dict(tls, token=None, cert=str(pki / "known.pem"), key=str(pki / "known.key"))
    ops, d = run(device, spec(sim, subscribe=True, ops=[["telemetry", {"by": "x509"}]], **x509))
    assert ops[0]["ok"], d.output()
    did = sim.rest.device_id(X509_DEVICE)
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys="by")
    assert got["by"][0]["value"] == "x509", got
    # a certificate bound to no device: CONNACK 0x05, which the Device raises as Unauthorized
    bad = dict(x509, cert=str(pki / "unknown.pem"), key=str(pki / "unknown.key"))
    ops, d = run(device, spec(sim, ops=[["telemetry", {"by": "nobody"}]], **bad))
    assert (ops[0]["ok"], ops[0]["error"]) == (False, "Unauthorized"), d.output()
    assert "CONNACK 5" in ops[0]["message"], ops[0]


def test_mqtt_basic_credentials_and_refusals(sim, device, tmp_path):
    did = sim.rest.device_id(sim.device_name)
    sim.rest.post("/api/device/credentials", {"deviceId": {"id": did, "entityType": "DEVICE"},
                                              "credentialsType": "MQTT_BASIC", "credentialsValue": json.dumps(
                                                  {"clientId": "c1", "userName": "u1", "password": "p1"})})
    basic = {"client_id": "c1", "username": "u1", "password": "p1", "timeout_ms": 3000}
    ops, d = run(device, spec(sim, token=None, mqtt=basic, ops=[["telemetry", {"basic": 1}]]))
    assert ops[0]["ok"], d.output()
    assert latest(sim, ["basic"]) == {"basic": 1}
    # a wrong password, and the old token (gone with the new credentials): refused, said as 4.01 is over CoAP
    wrong = dict(basic, password="p2")
    ops, d = run(device, spec(sim, token=None, mqtt=wrong, ops=[["telemetry", {"basic": 2}], ["request", None, None]]))
    assert [(o["ok"], o["error"], o["code"]) for o in ops] == [(False, "Unauthorized", 129)] * 2, d.output()
    # refused, then taken once the server knows the token: the next call after the back-off connects
    go = str(tmp_path / "go")
    d = device(spec(sim, ops=[["telemetry", {"n": 1}], ["wait_file", go],
                              ["until_ok", 20000, "telemetry", {"after": "fix"}]]))
    first = d.op("telemetry")
    assert first and first["error"] == "Unauthorized", d.output()
    sim.rest.post("/api/device/credentials", {"deviceId": {"id": did, "entityType": "DEVICE"},
                                              "credentialsType": "ACCESS_TOKEN", "credentialsId": sim.token})
    open(go, "w").close()
    done = d.op("until_ok", timeout=30)
    assert done and done["ok"], d.output()
    assert latest(sim, ["after"]) == {"after": "fix"}


# ---- OTA chunks and provisioning ----------------------------------------------------------------

IMAGE = bytes(range(256)) * 12 + b"tail"  # 3076 bytes: three full 1000-byte chunks and a short one


def test_firmware_chunks_from_an_offset_and_no_package(sim, device):
    import hashlib

    ops, d = run(device, spec(sim, ops=[["firmware", "fw", "tb-fw", "1.1.0", len(IMAGE), 1000, 0],
                                        ["telemetry", {"after": "error"}]]))
    # nothing assigned: ThingsBoard's v2/fw/error NOT_FOUND, then it closes the connection; the Device reconnects
    assert not ops[0]["ok"] and ops[0]["error"] == "OtaError" and "NOT_FOUND" in ops[0]["message"], d.output()
    assert ops[1]["ok"], d.output()
    upload_and_assign(sim, IMAGE)
    ops, d = run(device, spec(sim, ops=[["firmware", "fw", "tb-fw", "1.1.0", len(IMAGE), 1000, 0],
                                        ["firmware", "fw", "tb-fw", "1.1.0", len(IMAGE), 512, 2500],
                                        ["firmware", "fw", "tb-fw", "1.1.0", len(IMAGE) + 1, 1000, 0]]))
    assert ops[0]["result"] == {"bytes": len(IMAGE), "pieces": 4, "sha256": hashlib.sha256(IMAGE).hexdigest()}, ops
    # resumed at byte 2500: chunks of 512 from the one holding it, the first one cut
    assert ops[1]["result"] == {"bytes": len(IMAGE) - 2500, "pieces": 3,
                                "sha256": hashlib.sha256(IMAGE[2500:]).hexdigest()}, ops
    assert not ops[2]["ok"] and "truncated" in ops[2]["message"], ops[2]  # fw_size one byte too many
    log = sim.log_text()
    # a new request id per download, one chunk at a time, the size in ASCII ("512": 3 bytes)
    assert "v2/fw/request/2/chunk/4 <3 bytes> -> PUBACK then PUBLISH q1 v2/fw/response/2/chunk/4 <512 bytes>" in log, log


def test_provisioning_in_a_session_of_its_own(sim, device):
    ops, d = run(device, spec(sim, token=None, ops=[
        ["provision", sim.provision_key, sim.provision_secret, "mqtt-prov-1"],
        ["provision", sim.provision_key, "wrong", "mqtt-prov-2"]]))
    assert ops[0]["ok"] and ops[0]["result"]["device_name"] == "mqtt-prov-1", d.output()
    assert (ops[1]["ok"], ops[1]["error"], ops[1]["status"]) == (False, "ProvisionError", "NOT_FOUND"), ops[1]
    token = ops[0]["result"]["token"]
    ops, d = run(device, spec(sim, token=token, ops=[["telemetry", {"provisioned": 1}]]))
    assert ops[0]["ok"], d.output()
    did = sim.rest.device_id("mqtt-prov-1")
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys="provisioned")
    assert got["provisioned"][0]["value"] in (1, "1"), got
    assert "CONNECT client id 'provision' user prov... -> CONNACK 0x00 (provisioning session)" in sim.log_text()


# ---- faults: a restart, a reset, a half-open connection ------------------------------------------

def has_attrs(d, changed, start=0, timeout=15):
    return d.wait(lambda e: e["ev"] == "attrs" and all(e["changed"].get(k) == v for k, v in changed.items()),
                  timeout, start)


def test_reconnects_and_resubscribes_after_a_tbsim_restart(tbsim_factory, device, tmp_path):
    port = free_port(kind=__import__("socket").SOCK_STREAM)
    args = ("--mqtt-port", str(port), "--db", str(tmp_path / "tbsim.sqlite"))
    sim = tbsim_factory(*args)
    go = str(tmp_path / "go")
    d = device(spec(sim, subscribe=True, keepalive_ms=1000, ops=[["wait_file", go], ["telemetry", {"after": 1}]]))
    assert d.wait(lambda e: e["ev"] == "ready"), d.output()
    m = d.mark()
    sim.stop()  # its connections close with it
    assert d.logged("mqtt: connection lost", start=m), d.output()
    sim = tbsim_factory(*args)  # same port, same database: the device exists, its session does not
    set_shared(sim, {"v": 2})
    # a new connection, subscribed again, and the state asked for again (nothing survives, wire-mqtt §2.5)
    assert has_attrs(d, {"v": 2}, start=m), d.output()
    assert wait_until(lambda: rpc(sim, "echo", {"back": 1}, 2000) == (200, {"back": 1}), 10), d.output()
    open(go, "w").close()
    assert d.op("telemetry")["ok"], d.output()
    end = d.end()
    assert end["reconnects"] >= 1, end
    assert latest(sim, ["after"]) == {"after": 1}


def test_a_reset_connection_is_made_again(sim, device, tmp_path):
    px = TcpProxy(sim.mqtt_port)
    try:
        go = str(tmp_path / "go")
        d = device(spec(sim, port=px.port, subscribe=True, ops=[["wait_file", go], ["telemetry", {"n": 2}]]))
        assert d.wait(lambda e: e["ev"] == "ready"), d.output()
        m = d.mark()
        px.reset()
        assert d.logged("mqtt: connection lost", start=m), d.output()
        assert wait_until(lambda: px.accepted >= 2 and rpc(sim, "echo", {"n": 1}, 2000) == (200, {"n": 1}), 15), \
            d.output()
        open(go, "w").close()
        assert d.op("telemetry")["ok"], d.output()
        assert d.end()["reconnects"] == 1
    finally:
        px.stop()
    assert latest(sim, ["n"]) == {"n": 2}


def test_a_half_open_connection_is_noticed_by_the_keepalive(sim, device, tmp_path):
    px = TcpProxy(sim.mqtt_port)
    try:
        go = str(tmp_path / "go")
        d = device(spec(sim, port=px.port, subscribe=True, keepalive_ms=1000, ping_timeout_ms=1500,
                        ops=[["wait_file", go], ["telemetry", {"after": "freeze"}]]))
        assert d.wait(lambda e: e["ev"] == "ready"), d.output()
        # nothing from the server for keepalive_ms: a PINGREQ; no PINGRESP in time: a new connection
        m = d.mark()
        px.freeze()
        assert d.logged("keepalive: no answer to a ping", start=m), d.output()
        assert wait_until(lambda: px.accepted >= 2 and rpc(sim, "echo", {"n": 1}, 2000) == (200, {"n": 1}), 15), \
            d.output()
        open(go, "w").close()
        assert d.op("telemetry")["ok"], d.output()
        assert px.dropped > 0
    finally:
        px.stop()
    assert latest(sim, ["after"]) == {"after": "freeze"}


def test_a_missing_puback_ends_the_connection_and_the_sample_goes_again(sim, device, tmp_path):
    # No supervisor task here (nothing subscribed): the PUBACK's time limit alone notices the dead link.
    px = TcpProxy(sim.mqtt_port)
    try:
        go = str(tmp_path / "go")
        d = device(spec(sim, port=px.port, ops=[["telemetry", {"n": 1}], ["wait_file", go],
                                                ["telemetry", {"during": "freeze"}]]))
        assert d.wait(lambda e: e["ev"] == "waiting"), d.output()
        px.freeze()
        m = d.mark()
        open(go, "w").close()
        done = d.op("telemetry", timeout=20, start=m)
        assert done and done["ok"], d.output()
        assert d.logged("mqtt: connection lost: no PUBACK in 3000 ms", start=m) and px.accepted == 2, d.output()
    finally:
        px.stop()
    assert latest(sim, ["during"]) == {"during": "freeze"}


def test_answers_above_the_receive_buffer(sim, device):
    # 1088 bytes are read in place; up to 4352 into a buffer of their own; larger ones are skipped
    # (counted) and the connection goes on
    set_shared(sim, {"big": "x" * 2000})
    ops, d = run(device, spec(sim, ops=[["request", None, ["big"]], ["stats"]]))
    assert ops[0]["ok"] and ops[0]["result"]["shared"]["big"] == "x" * 2000, d.output()
    set_shared(sim, {"huge": "y" * 6000})
    ops, d = run(device, spec(sim, mqtt={"timeout_ms": 1500}, ops=[
        ["request", None, ["huge"]], ["request", None, ["big"]], ["telemetry", {"still": 1}], ["stats"]]))
    assert (ops[0]["ok"], ops[0]["error"]) == (False, "Timeout"), d.output()
    assert ops[1]["ok"] and ops[1]["result"]["shared"] == {"big": "x" * 2000}, d.output()
    assert ops[2]["ok"] and ops[3]["result"]["rx_too_big"] == 1 and ops[3]["result"]["connects"] == 1, ops[3]


def test_blocking_device_over_mqtt(sim):
    set_shared(sim, {"blk_attr": "a"})
    r = mpy.run(["tests/integration/mpy/mqtt_blocking.py", str(sim.mqtt_port), sim.token], heap=HEAP, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [None, {"client": {}, "shared": {"blk_attr": "a"}}, None,
                                                            {"x": 1}]
    assert latest(sim, ["blk"]) == {"blk": 2}
    assert sim.log_text().count("CONNECT client id") == 1  # one connection for every call


def test_a_packet_the_socket_takes_in_parts_goes_out_whole_and_in_order():
    port = free_port(kind=__import__("socket").SOCK_STREAM)
    r = mpy.run(["tests/integration/mpy/mqtt_wire_partial.py", str(port)], heap="1M", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "partial True pending False same True", r.stdout
