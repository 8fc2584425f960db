# The reference firmware over MQTT on the unix port against tbsim --mqtt-port, as `make device`
# runs it (tools/run-device): telemetry with the client's timestamps, the run contract's RPCs and
# the live telemetry interval, OTA state reported, a refused token keeping every sample until the
# server takes it, and the MQTT modules loaded only for an MQTT config (a CoAP app never imports them).
import json
import time

import pytest

import mpy
from tbtest import load_tool, wait_until
from test_firmware import Device, stored, write_config
from test_refused_credentials import WRONG, _history


@pytest.fixture
def sim(tbsim_factory):
    return tbsim_factory("--mqtt-port", "0")


def rpc(sim, method, params=None):
    did = sim.rest.device_id(sim.device_name)
    return sim.rest.request("POST", "/api/plugins/rpc/twoway/" + did, {"method": method, "params": params or {},
                                                                       "timeout": 5000}, timeout=10)


def test_reference_app_over_mqtt(sim, tmp_path):
    dev = Device(write_config(tmp_path, transport="mqtt", port=sim.mqtt_port, token=sim.token))
    try:
        assert dev.wait_for('"temperature"'), dev.output()
        assert dev.wait_for("-> PUBACK"), dev.output()
        assert "device: MQTT 127.0.0.1:%d" % sim.mqtt_port in dev.output()
        got = wait_until(lambda: (lambda s: s if len(s) == 3 else None)(
            stored(sim, sim.device_name, ["temperature", "humidity", "current_fw_version"])))
        assert got and abs(got["temperature"]["ts"] - time.time() * 1000) < 60000, dev.output()
        assert wait_until(lambda: rpc(sim, "setGpio", {"pin": 5, "value": 1})[0] == 200, 10), dev.output()
        assert rpc(sim, "getGpio", {"pin": 5}) == (200, {"pin": 5, "value": 1})
        status, st = rpc(sim, "getStatus")
        assert status == 200 and st["fw_title"] == "tb-micropython" and st["reconnects"] == 0, st
        did = sim.rest.device_id(sim.device_name)
        sim.rest.post("/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % did, {"telemetry_interval_ms": 700})
        assert dev.wait_for("telemetry interval: 700 ms"), dev.output()
    finally:
        rc = dev.stop()
    assert rc == 0 and "device: stopped" in dev.output(), dev.output()
    log = sim.log_text()
    assert "SUBSCRIBE v1/devices/me/attributes q1, v1/devices/me/rpc/request/+ q1 -> SUBACK 0x01 0x01" in log, log
    assert "PUBLISH q1 v1/devices/me/telemetry" in log


def test_refused_token_keeps_samples_until_the_server_takes_it(sim, tmp_path):
    dev = Device(write_config(tmp_path, transport="mqtt", port=sim.mqtt_port, token=WRONG, telemetry_interval_ms=200,
                              queue={"retry_ms": 200, "retry_max_ms": 1000, "gap_ms": 0}))
    try:
        assert dev.wait_for("credentials refused", 15), dev.output()
        t_refused = time.time()
        assert wait_until(lambda: sum("retrying in" in x for x in dev.lines) >= 4, 15), dev.output()
        out = dev.output()
        assert "samples refused" not in out and out.count("credentials refused") == 1, out
        assert "access token in `token`" in next(x for x in dev.lines if "credentials refused" in x)
        # CONNECT is tried again after a back-off, not at every sample
        assert sim.log_text().count("CONNACK 0x05") <= 6, sim.log_text()
        did = sim.rest.device_id(sim.device_name)
        sim.rest.post("/api/device/credentials", {"deviceId": {"id": did, "entityType": "DEVICE"},
                                                  "credentialsType": "ACCESS_TOKEN", "credentialsId": WRONG})
        got = wait_until(lambda: (lambda h: h if h and h[0] < t_refused * 1000 and h[-1] > time.time() * 1000 - 3000
                                  else None)(_history(sim, "temperature")), 30, interval=0.25)
        assert got, dev.output()
        assert dev.wait_for("queued samples -> PUBACK", 10), dev.output()
        # and the subscriptions, once the credentials are taken
        assert wait_until(lambda: rpc(sim, "getStatus")[0] == 200, 15), dev.output()
    finally:
        dev.stop()


def _modules(tmp_path, **cfg):
    path = write_config(tmp_path, **cfg)
    r = mpy.run(["tests/integration/mpy/app_modules.py", path], heap="384K", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])["modules"]


def test_mqtt_modules_load_only_for_an_mqtt_config(sim, tmp_path):
    coap = _modules(tmp_path, port=sim.coap_port, token=sim.token)
    assert "tbdevice.coaplink" in coap and not [m for m in coap if "mqtt" in m], coap
    mqtt = _modules(tmp_path, transport="mqtt", port=sim.mqtt_port, token=sim.token)
    assert {"tbdevice.mqttlink", "tbdevice.mqttcodec", "tbdevice.mqttconn"} <= set(mqtt), mqtt
    assert "tbdevice.coaplink" not in mqtt and "tbdevice.mqttota" not in mqtt and "tbdevice.mqttprov" not in mqtt
    assert "tbdevice.mqttwhy" not in mqtt, mqtt  # the failure texts load only on a failure


def _values(sim, key):
    did = sim.rest.device_id(sim.device_name)
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys=key, startTs="0",
                       endTs=str(int(time.time() * 1000) + 60000), limit="1000", orderBy="ASC")
    return [p["value"] for p in got.get(key, [])]


@pytest.mark.parametrize("where", ["beside the app", "own boot"])
def test_the_app_updates_itself_over_mqtt_chunks(sim, tmp_path, where):
    from test_http_device import upload_and_assign

    bt = load_tool("bundle.py")
    sd = tmp_path / "state"
    sd.mkdir()
    bt.install(bt.build("1.0.0", "UNIX", out=str(tmp_path / "a.tbb")), str(sd))
    data = open(bt.build("1.0.1", "UNIX", out=str(tmp_path / "b.tbb")), "rb").read()
    dev = Device(write_config(tmp_path, transport="mqtt", port=sim.mqtt_port, token=sim.token, state_dir=str(sd),
                              ota={"timeout_ms": 3000, "retry_ms": 200, "health_timeout_ms": 15000, "chunk_size": 1024,
                                   "beside_app_kb": 100000 if where == "own boot" else 0}))
    try:
        assert wait_until(lambda: (_values(sim, "current_fw_version") or [None])[-1] == "1.0.0", 20), dev.output()
        upload_and_assign(sim, data, title="tb-micropython", version="1.0.1")
        ok = wait_until(lambda: (_values(sim, "fw_state") or [None])[-1] == "UPDATED", 90, 0.2)
        assert ok, dev.output() + "\n" + sim.log_text()[-3000:]
        states = [s for s in _values(sim, "fw_state") if s not in ("QUEUED", "INITIATED")]
        order = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
        assert order == ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"], states
        assert _values(sim, "current_fw_version")[-1] == "1.0.1"
        out = dev.output()
        assert "run-device: reset, booting again" in out and "fw 1.0.1 confirmed" in out, out
        assert ("a boot of its own for the update" in out) == (where == "own boot"), out
    finally:
        dev.stop()
    log = sim.log_text()
    n = (len(data) + 1023) // 1024
    # every chunk once, 1024 bytes (ASCII "1024"), one request id for the download
    assert "v2/fw/request/" in log and "chunk/%d <4 bytes> -> PUBACK then PUBLISH q1" % (n - 1) in log, log[-3000:]
    assert "chunk/%d <4 bytes>" % n not in log


def test_the_app_provisions_itself_over_mqtt_then_connects_with_the_token(sim, tmp_path):
    cfg = write_config(tmp_path, transport="mqtt", port=sim.mqtt_port, provision={
        "device_key": sim.provision_key, "device_secret": sim.provision_secret, "device_name": "mqtt-app-1"})
    dev = Device(cfg)
    try:
        assert dev.wait_for('"temperature"'), dev.output()
        assert dev.wait_for("-> PUBACK"), dev.output()
    finally:
        dev.stop()
    creds = json.loads((tmp_path / "tb_credentials.json").read_text())
    assert creds["device_name"] == "mqtt-app-1" and stored(sim, "mqtt-app-1", ["temperature"])
    out = dev.output()
    assert "provision: stored the new token for mqtt-app-1" in out and "link down" not in out, out
    log = sim.log_text()
    assert "(provisioning session)" in log and "PUBLISH q1 /provision/request" in log, log


def test_an_update_cut_mid_download_goes_on_from_where_it_was(sim, tmp_path):
    import re

    from tcpproxy import TcpProxy
    from test_http_device import upload_and_assign

    bt = load_tool("bundle.py")
    sd = tmp_path / "state"
    sd.mkdir()
    bt.install(bt.build("1.0.0", "UNIX", out=str(tmp_path / "a.tbb")), str(sd))
    data = open(bt.build("1.0.1", "UNIX", out=str(tmp_path / "b.tbb")), "rb").read()
    px = TcpProxy(sim.mqtt_port)
    dev = Device(write_config(tmp_path, transport="mqtt", port=px.port, token=sim.token, state_dir=str(sd),
                              ota={"timeout_ms": 3000, "retry_ms": 200, "health_timeout_ms": 15000}))
    try:
        assert wait_until(lambda: (_values(sim, "current_fw_version") or [None])[-1] == "1.0.0", 20), dev.output()
        m = sim.mark()
        upload_and_assign(sim, data, title="tb-micropython", version="1.0.1")
        # the connection is reset while chunk 20 is being asked for: the download goes on from its offset
        assert sim.wait_for_log(re.compile(r"v2/fw/request/\d+/chunk/20 "), timeout=30, start=m), sim.log_text()
        px.reset()
        ok = wait_until(lambda: (_values(sim, "fw_state") or [None])[-1] == "UPDATED", 90, 0.2)
        assert ok, dev.output() + "\n" + sim.log_text()[-3000:]
    finally:
        dev.stop()
        px.stop()
    asked = re.findall(r"v2/fw/request/(\d+)/chunk/(\d+) ", "\n".join(sim.lines[m:]))
    ids = sorted({int(i) for i, _ in asked})
    assert len(ids) >= 2, asked  # a new request id after the reset
    first_after = min(int(k) for i, k in asked if int(i) == ids[-1])
    assert first_after >= 20, asked  # not from chunk 0 again
    n = (len(data) + 1023) // 1024
    assert max(int(k) for _, k in asked) == n - 1, (n, asked[-3:])
    assert "fw 1.0.1 confirmed" in dev.output()
