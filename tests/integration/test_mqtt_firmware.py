# The reference firmware over MQTT on the unix port against tbsim --mqtt-port, as `make device`
# runs it (tools/run-device): telemetry with the client's timestamps, the run contract's RPCs and
# the live telemetry interval, OTA state reported, a refused token keeping every sample until the
# server takes it, and the MQTT modules loaded only for an MQTT config (a CoAP app never imports them).
import json
import time

import pytest

import mpy
from tbtest import wait_until
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
