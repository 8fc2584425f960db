"""The ThingsBoard MQTT API page's own mosquitto commands (thingsboard.github.io _includes/docs/reference/mqtt-api.md
and its resources/mosquitto-*.sh) against tbsim, with Debian's mosquitto-clients. The commands are the page's, with
`$THINGSBOARD_HOST_NAME` and `$ACCESS_TOKEN` set in the shell; the one change is `-p "$PORT"`, since tbsim listens
on a free port here rather than on 1883. Results are read back through tbsim's REST API."""

import json
import os
import pty
import queue
import shutil
import subprocess
import threading

import pytest

from test_tbsim_mqtt import attributes, latest, mqtt_port

PUB, SUB = shutil.which("mosquitto_pub"), shutil.which("mosquitto_sub")
pytestmark = pytest.mark.skipif(PUB is None or SUB is None,
                                reason="mosquitto-clients not installed (apt-get install mosquitto-clients)")

FILES = {  # the page's resource files
    "telemetry-data-as-object.json": """{
  "stringKey": "value1",
  "booleanKey": true,
  "doubleKey": 42.0,
  "longKey": 73,
  "jsonKey": {
    "someNumber": 42,
    "someArray": [1,2,3],
    "someNestedObject": {"key": "value"}
  }
}""",
    "telemetry-data-as-array.json": '[{"key1":"value1"}, {"key2":true}]',
    "telemetry-data-with-ts.json": """{
  "ts": 1451649600512,
  "values": {
    "stringKey": "value1",
    "booleanKey": true,
    "doubleKey": 42.0,
    "longKey": 73,
    "jsonKey": {
      "someNumber": 42,
      "someArray": [1, 2, 3],
      "someNestedObject": {
        "key": "value"
      }
    }
  }
}""",
    "new-attributes-values.json": """{
  "attribute1": "value1",
  "attribute2": true,
  "attribute3": 42.0,
  "attribute4": 73,
  "attribute5": {
    "someNumber": 42,
    "someArray": [1,2,3],
    "someNestedObject": {"key": "value"}
  }
}""",
}


@pytest.fixture
def sim(tbsim_factory):
    s = tbsim_factory("--mqtt-port", "0")
    s.mqtt_port = mqtt_port(s)
    return s


@pytest.fixture
def page(sim, tmp_path):
    """Runs one of the page's commands in a shell: (exit code, stdout, stderr)."""
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    env = dict(os.environ, THINGSBOARD_HOST_NAME=sim.host, PORT=str(sim.mqtt_port), ACCESS_TOKEN=sim.token)

    def run(cmd):
        p = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout, p.stderr

    run.env, run.cwd = env, tmp_path
    return run


def test_getting_started_telemetry(sim, page):
    # The page's first command: its -m {"temperature":25} reaches the server as {temperature:25}, which
    # ThingsBoard's lenient Gson reads; the page shows the PUBACK that follows.
    rc, out, _ = page('mosquitto_pub -d -q 1 -h "$THINGSBOARD_HOST_NAME" -p "$PORT" -t "v1/devices/me/telemetry" '
                      '-u "$ACCESS_TOKEN" -m {"temperature":25}')
    assert rc == 0
    assert "received CONNACK (0)" in out and "received PUBACK (Mid: 1, RC:0)" in out and "sending DISCONNECT" in out
    assert latest(sim, "temperature") == {"temperature": 25}


def test_telemetry_upload_examples(sim, page):
    rc, out, _ = page('mosquitto_pub -d -q 1 -h "$THINGSBOARD_HOST_NAME" -p "$PORT" -t "v1/devices/me/telemetry" '
                      '-u "$ACCESS_TOKEN" -m \'{"temperature":42}\'')
    assert rc == 0 and "received PUBACK" in out
    for name in ("telemetry-data-as-object.json", "telemetry-data-as-array.json", "telemetry-data-with-ts.json"):
        rc, out, err = page('mosquitto_pub -d -q 1 -h "$THINGSBOARD_HOST_NAME" -p "$PORT" -t "v1/devices/me/telemetry" '
                            '-u "$ACCESS_TOKEN" -f "%s"' % name)
        assert rc == 0 and "received PUBACK" in out, (name, out, err)
    got = latest(sim, "temperature,doubleKey,longKey,jsonKey,key1,key2")
    assert got["temperature"] == 42 and got["doubleKey"] == 42.0 and got["longKey"] == 73
    assert got["jsonKey"] == {"someNumber": 42, "someArray": [1, 2, 3], "someNestedObject": {"key": "value"}}
    assert (got["key1"], got["key2"]) == ("value1", True)
    did = sim.rest.device_id(sim.device_name)
    hist = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys="stringKey", startTs="0",
                        endTs="1500000000000", limit="5")
    assert [p["ts"] for p in hist["stringKey"]] == [1451649600512]  # Example 4's client timestamp


def test_attributes_publish_examples(sim, page):
    # The page's inline form -m "{"attribute1": "value1", "attribute2": true}" arrives without its inner quotes;
    # Gson reads value1 as a string.
    rc, out, _ = page('mosquitto_pub -d -h "$THINGSBOARD_HOST_NAME" -p "$PORT" -t "v1/devices/me/attributes" '
                      '-u "$ACCESS_TOKEN" -m "{"attribute1": "value1", "attribute2": true}"')
    assert rc == 0 and "sending PUBLISH (d0, q0" in out
    rc, out, _ = page('mosquitto_pub -d -h "$THINGSBOARD_HOST_NAME" -p "$PORT" -t "v1/devices/me/attributes" '
                      '-u "$ACCESS_TOKEN" -f "new-attributes-values.json"')
    assert rc == 0
    # QoS 0 has no PUBACK: a QoS 1 publish after them on a new connection is stored after them.
    page('mosquitto_pub -q 1 -h "$THINGSBOARD_HOST_NAME" -p "$PORT" -t "v1/devices/me/attributes" '
         '-u "$ACCESS_TOKEN" -m \'{"marker":1}\'')
    got = attributes(sim, "CLIENT_SCOPE")
    assert got["attribute1"] == "value1" and got["attribute2"] is True and got["attribute3"] == 42.0
    assert got["attribute4"] == 73 and got["attribute5"]["someArray"] == [1, 2, 3]


def _lines_of(fd, out):
    """Lines written to a pty's master, into a queue (a pty, so mosquitto_sub's stdout is line-buffered)."""
    buf = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the child has closed its side
            data = b""
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            out.put(line.decode(errors="replace").rstrip("\r"))


def test_attributes_subscribe_example(sim, page):
    lines = queue.Queue()
    master, slave = pty.openpty()
    proc = subprocess.Popen('exec mosquitto_sub -d -h "$THINGSBOARD_HOST_NAME" -p "$PORT" '
                            '-t "v1/devices/me/attributes" -u "$ACCESS_TOKEN" -C 1',
                            shell=True, cwd=page.cwd, env=page.env, stdout=slave, stderr=slave)
    os.close(slave)
    threading.Thread(target=_lines_of, args=(master, lines), daemon=True).start()
    try:
        while "received SUBACK" not in lines.get(timeout=10):
            pass
        did = sim.rest.device_id(sim.device_name)
        sim.rest.post("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did, {"key1": "value1"})
        line = lines.get(timeout=10)
        while not line.startswith("{"):
            line = lines.get(timeout=10)
        assert json.loads(line) == {"key1": "value1"}  # the page's update, and no snapshot before it
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_wrong_token_refused(sim, page):
    rc, out, err = page('mosquitto_pub -d -q 1 -h "$THINGSBOARD_HOST_NAME" -p "$PORT" -t "v1/devices/me/telemetry" '
                        '-u "NOT_A_TOKEN" -m \'{"temperature":42}\'')
    assert rc != 0 and "received CONNACK (5)" in out and "not authorised" in err
    assert latest(sim, "temperature") == {}
