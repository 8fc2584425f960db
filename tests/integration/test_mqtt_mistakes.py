# A newcomer's MQTT mistakes with the reference firmware (tools/run-device) against tbsim: each gets a
# log line that names the cause and what to change (docs/getting-started.md, troubleshooting), and
# nothing is lost meanwhile. Waits are on the device's output, never on a clock.
import os
import subprocess
import sys

import pytest

from tbtest import REPO, free_port
from test_firmware import Device, write_config


@pytest.fixture
def sim(tbsim_factory, tmp_path):
    return tbsim_factory("--mqtt-port", "0", "--mqtts-port", "0", "--tls-dir", str(tmp_path / "pki"))


def _said(tmp_path, text, then=None, **cfg):
    dev = Device(write_config(tmp_path, transport=cfg.pop("transport", "mqtt"), **cfg))
    try:
        line = dev.wait_for(text, 20)
        assert line, dev.output()
        if then:
            assert dev.wait_for(then, 20), dev.output()
    finally:
        dev.stop()
    assert "Traceback" not in dev.output(), dev.output()
    return (line, dev.output()) if then else line


def test_wrong_port_or_transport_says_which(sim, tmp_path):
    tok = sim.token
    # the CoAP port (UDP: nothing listens on TCP there), then tbsim's HTTP port
    line = _said(tmp_path, "nothing listens at 127.0.0.1:%d" % sim.coap_port, port=sim.coap_port, token=tok)
    assert "check `port` (ThingsBoard: 1883 for mqtt, 8883 for mqtts)" in line, line
    line = _said(tmp_path, "127.0.0.1:%d does not speak MQTT" % sim.http_port, port=sim.http_port, token=tok)
    assert "check `port`" in line, line
    # plain MQTT at the TLS port, and TLS at the plain port
    line = _said(tmp_path, "closed the connection before the CONNACK", port=sim.mqtts_port, token=tok)
    assert "use `transport` mqtts" in line, line
    line = _said(tmp_path, "no TLS at 127.0.0.1:%d" % sim.mqtt_port, transport="mqtts", port=sim.mqtt_port,
                 token=tok, tls={"ca": sim.tls_ca})
    assert "plain MQTT port" in line, line


def test_mqtts_with_another_ca(sim, tmp_path):
    other = tmp_path / "other"
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "tools"))
    subprocess.run([sys.executable, "-m", "tbsim.tls", str(other)], check=True, env=env, capture_output=True)
    line = _said(tmp_path, "does not chain to `tls.ca`", transport="mqtts", port=sim.mqtts_port, token=sim.token,
                 tls={"ca": str(other / "ca.pem")})
    assert "127.0.0.1:%d" % sim.mqtts_port in line and "give the CA that signed" in line, line


def test_mqtt_basic_refusal_names_the_mqtt_credentials(sim, tmp_path):
    line, out = _said(tmp_path, "credentials refused", then="queued, retrying in", port=sim.mqtt_port,
                      mqtt={"client_id": "c1", "username": "u1", "password": "nope"})
    # one line says it (the link's own "mqtt: CONNACK 5" line was a second), and the samples stay queued
    assert not [x for x in out.splitlines() if x.startswith("mqtt: CONNACK")], out
    assert out.count("credentials refused") == 1, out
    assert "MQTT_BASIC credentials: the client id / user name / password of `mqtt`" in line, line
    assert "X.509" not in line, line


def test_nothing_at_all_listening(tmp_path):
    port = free_port(kind=__import__("socket").SOCK_STREAM)
    line = _said(tmp_path, "nothing listens at 127.0.0.1:%d (connection refused)" % port, port=port, token="t")
    assert "1883 for mqtt" in line, line


def test_payload_that_is_not_the_profiles(sim, tmp_path):
    # "payload": "protobuf" with a JSON device profile: ThingsBoard closes the connection at the first
    # PUBLISH it cannot parse, on every connection; the line says what to compare
    line = _said(tmp_path, "connection lost", port=sim.mqtt_port, token=sim.token, payload="protobuf")
    assert "is `payload` the device profile's MQTT payload type, JSON or PROTOBUF?" in line, line
    # and the reverse: JSON to a PROTOBUF profile
    from test_mqtt_protobuf import NAME, TOKEN, profile
    profile(sim)
    line = _said(tmp_path, "connection lost", port=sim.mqtt_port, token=TOKEN)
    assert "is `payload` the device profile's MQTT payload type" in line, line
    assert NAME in sim.log_text()


def test_device_of_a_coap_profile_over_mqtt(tbsim_factory, tmp_path):
    # --protobuf-device puts the device in a COAP profile: ThingsBoard answers its MQTT CONNECT with 0x03
    sim = tbsim_factory("--mqtt-port", "0", "--protobuf-device", "Coap-1=COAP_TOKEN")
    line = _said(tmp_path, "CONNACK 3", port=sim.mqtt_port, token="COAP_TOKEN")
    assert "the device's profile has a transport other than MQTT or Default" in line, line
