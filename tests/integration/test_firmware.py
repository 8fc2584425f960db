# firmware/main.py on the unix port (UNIX board) against tbsim, as `make device` runs it.
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

import mpy
from tbtest import free_port, wait_until

RUN_DEVICE = os.path.join(mpy.ROOT, "tools", "run-device")


def write_config(tmp_path, **cfg):
    cfg.setdefault("host", "127.0.0.1")
    cfg.setdefault("state_dir", str(tmp_path))
    cfg.setdefault("telemetry_interval_ms", 300)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


class Device:
    """firmware/main.py in the background through tools/run-device; collects its output."""

    def __init__(self, config, heap="384K"):  # from source: compiling needs room; boards run .mpy
        env = dict(os.environ, HEAP=heap)
        self.proc = subprocess.Popen([RUN_DEVICE, config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, cwd=mpy.ROOT)
        self.lines = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text, timeout=10):
        return wait_until(lambda: next((l for l in self.lines if text in l), None), timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=10)
        self._t.join(timeout=2)
        return rc

    def output(self):
        return "\n".join(self.lines)


def stored(sim, name, keys):
    dev = sim.rest.device_id(name)
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % dev, keys=",".join(keys),
                       useStrictDataTypes="true")
    return {k: v[0] for k, v in got.items() if v}


def test_reference_app_reports_and_stops_cleanly(tbsim, tmp_path):
    dev = Device(write_config(tmp_path, port=tbsim.coap_port, token=tbsim.token))
    try:
        assert dev.wait_for('"temperature"'), dev.output()
        got = wait_until(lambda: (lambda s: s if len(s) == 4 else None)(
            stored(tbsim, tbsim.device_name, ["temperature", "humidity", "current_fw_title", "current_fw_version"])))
        assert got, dev.output()
        assert isinstance(got["temperature"]["value"], float) and isinstance(got["humidity"]["value"], float)
        assert got["current_fw_title"]["value"] == "tb-micropython"
        # client timestamps: the unix port's clock is set, so ts is the device's, close to now
        assert abs(got["temperature"]["ts"] - time.time() * 1000) < 60000
    finally:
        rc = dev.stop()
    assert rc == 0, dev.output()
    assert "device: stopped" in dev.output()


def test_provisioning_then_stored_token_on_next_boot(tbsim, tmp_path):
    cfg = write_config(tmp_path, port=tbsim.coap_port, provision={
        "device_key": tbsim.provision_key, "device_secret": tbsim.provision_secret, "device_name": "prov-fw-1"})
    dev = Device(cfg)
    try:
        assert dev.wait_for('"temperature"'), dev.output()
    finally:
        dev.stop()
    creds = json.loads((tmp_path / "tb_credentials.json").read_text())
    assert creds["token"] and creds["device_name"] == "prov-fw-1"
    assert stored(tbsim, "prov-fw-1", ["temperature"])
    mark = tbsim.mark()
    dev = Device(cfg)
    try:
        assert dev.wait_for('"temperature"'), dev.output()
    finally:
        dev.stop()
    assert "using the stored token" in dev.output()
    assert tbsim.wait_for_log("provision", start=mark, timeout=0.5) is None  # no second provisioning


def test_provisioning_refused_is_one_clear_line(tbsim, tmp_path):
    cfg = write_config(tmp_path, port=tbsim.coap_port, provision={
        "device_key": tbsim.provision_key, "device_secret": "wrong-secret"})
    dev = Device(cfg)
    rc = dev.proc.wait(timeout=20)
    dev._t.join(timeout=2)
    assert rc == 1, dev.output()
    assert "NOT_FOUND" in dev.output()
    assert not (tmp_path / "tb_credentials.json").exists()


BAD_CONFIGS = [
    ({"token": "x"}, "'host' is required"),
    ({"host": "127.0.0.1"}, "'token' is required"),
    ({"host": "127.0.0.1", "token": "x", "colour": "red"}, "'colour' is not a known key"),
    ({"host": "127.0.0.1", "token": "x", "telemetry_interval_ms": "5s"}, "'telemetry_interval_ms'"),
    ({"host": "127.0.0.1", "token": "x", "transport": "amqp"}, "'transport' must be one of"),
    ({"host": "127.0.0.1", "provision": {"device_key": "k"}}, "'provision.device_secret' is required"),
    ({"host": "127.0.0.1", "token": "x", "port": 70000}, "'port'"),
]


def test_bad_config_is_one_line_naming_the_key(tmp_path):
    for cfg, expect in BAD_CONFIGS:
        p = tmp_path / "c.json"
        p.write_text(json.dumps(cfg))
        r = mpy.run(["firmware/main.py", str(p)], heap="384K", timeout=20)
        lines = [l for l in r.stdout.splitlines() if l.strip()]
        assert r.returncode == 2 and len(lines) == 1 and expect in lines[0], (cfg, r.stdout, r.stderr)
    p.write_text("{not json")
    r = mpy.run(["firmware/main.py", str(p)], heap="384K", timeout=20)
    assert r.returncode == 2 and "not valid JSON" in r.stdout
    r = mpy.run(["firmware/main.py", str(tmp_path / "missing.json")], heap="384K", timeout=20)
    assert r.returncode == 2 and "cannot read" in r.stdout


@pytest.mark.parametrize("transport", ["coap", "http"])
def test_a_port_nothing_serves_is_named(tmp_path, transport):
    # The newcomer's wrong `port` (or a server that is down): the link-down line says where nothing
    # answered, and the device keeps trying (docs/getting-started.md, troubleshooting).
    port = free_port(socket.SOCK_DGRAM if transport == "coap" else socket.SOCK_STREAM)
    dev = Device(write_config(tmp_path, port=port, token="T", transport=transport))
    try:
        line = dev.wait_for("link down", 20)
        assert line == "link down: nothing answers at 127.0.0.1:%d (connection refused): is `port` right, and " \
                       "the server up?" % port, dev.output()
    finally:
        dev.stop()


def test_a_host_that_does_not_resolve_is_named_and_tried_again(tmp_path):
    # A typo in `host`, or DNS not up yet when the board boots (a router coming back with it after a
    # power cut): said at start, then tried again with back-off; the device does not end (a board
    # would sit at its REPL until someone reset it).
    dev = Device(write_config(tmp_path, host="no-such-host.invalid", token="T"))
    try:
        said = "device: no-such-host.invalid: the host name does not resolve"
        assert dev.wait_for(said, 20), dev.output()
        assert "is `host` right? trying again in " in dev.output()
        assert wait_until(lambda: dev.output().count(said) >= 2, 20, 0.1), dev.output()
        assert dev.proc.poll() is None and "fatal" not in dev.output(), dev.output()
    finally:
        dev.stop()


class HostileServer:
    """Answers every CON request with garbage, a malformed CoAP message carrying the
    request's token, a response for an unknown token, then finally the right 2.01."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.rsts = 0
        self.running = True
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            if len(data) < 4:
                continue
            t = (data[0] >> 4) & 3
            if t == 3:
                self.rsts += 1
                continue
            if t == 2 or data[1] == 0:
                continue
            self.requests += 1
            tkl = data[0] & 15
            mid, token = data[2:4], data[4:4 + tkl]
            for junk in (b"", b"\x00", b"\xff" * 40, bytes(range(64)),
                         bytes([0x60 | tkl, 0x41]) + mid + token + b"\xf0\x01",  # ACK 2.01, option nibble 15
                         bytes([0x50 | tkl, 0x41, 0x12, 0x34]) + token + b"\x0d",  # NON, truncated option
                         bytes([0x44, 0x41, 0x22, 0x22]) + b"\xde\xad\xbe\xef"):  # CON 2.01, unknown token
                self.sock.sendto(junk, peer)
            self.sock.sendto(bytes([0x60 | tkl, 0x41]) + mid + token, peer)  # the real piggybacked 2.01

    def stop(self):
        self.running = False
        self.t.join(timeout=2)
        self.sock.close()


def test_garbage_and_malformed_responses_never_crash_the_device(tmp_path):
    srv = HostileServer()
    dev = Device(write_config(tmp_path, port=srv.port, token="T"))
    try:
        assert wait_until(lambda: len([l for l in dev.lines if "-> 2.01" in l]) >= 5, 15), dev.output()
    finally:
        rc = dev.stop()
        srv.stop()
    assert rc == 0, dev.output()
    assert "failed" not in dev.output().replace("0 failed", "")
    assert srv.rsts >= 1  # the unknown-token CON response was rejected with RST
