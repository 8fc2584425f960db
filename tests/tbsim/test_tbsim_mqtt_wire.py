"""tbsim's MQTT transport byte by byte (spec thingsboard-mqtt.md §2-§3): what a raw client sees where ThingsBoard
differs from an ordinary broker. Packets are written by hand here (no library of tbsim's side), and every wait is
for a packet or for the server's close."""

import socket
import struct

import pytest

from test_tbsim_mqtt import latest, mqtt_port

TOKEN = "A1_TEST_TOKEN"
CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK, PINGRESP = 0x20, 0x30, 0x40, 0x90, 0xB0, 0xD0


def _str(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("!H", len(b)) + b


def _packet(first, body):
    n, out = len(body), bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes([first]) + bytes(out) + body


class Raw:
    def __init__(self, port, user=TOKEN, clean=True, name="MQTT", level=4, client_id=""):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        flags = (0x02 if clean else 0) | (0x80 if user is not None else 0)
        body = _str(name) + bytes([level, flags]) + struct.pack("!H", 60) + _str(client_id)
        if user is not None:
            body += _str(user)
        self.s.sendall(_packet(0x10, body))

    def send(self, first, body):
        self.s.sendall(_packet(first, body))

    def publish(self, topic, payload, qos=1, pid=1):
        body = _str(topic) + (struct.pack("!H", pid) if qos else b"") + payload
        self.send(PUBLISH | (qos << 1), body)

    def subscribe(self, pid, *filters):
        self.send(0x82, struct.pack("!H", pid) + b"".join(_str(f) + bytes([q]) for f, q in filters))

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.s.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def recv(self):
        """(first byte, body), or None when the server has closed the connection."""
        head = self._read(1)
        if head is None:
            return None
        n, shift = 0, 0
        while True:
            b = self._read(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return head[0], self._read(n) if n else b""

    def close(self):
        self.s.close()


@pytest.fixture
def sim(tbsim_factory):
    s = tbsim_factory("--mqtt-port", "0")
    s.mqtt_port = mqtt_port(s)
    return s


@pytest.fixture
def raw(sim):
    made = []

    def connect(**kw):
        r = Raw(sim.mqtt_port, **kw)
        made.append(r)
        return r

    yield connect
    for r in made:
        r.close()


def test_connack_session_present_is_not_clean_session(raw):
    assert raw(clean=False).recv() == (CONNACK, b"\x01\x00")
    assert raw(clean=True).recv() == (CONNACK, b"\x00\x00")
    r = raw(clean=False, user="BAD")
    assert r.recv() == (CONNACK, b"\x01\x05")  # on refusals too, then the close
    assert r.recv() is None
    r = raw(name="MQIsdp", level=3, client_id="dev-31")  # MQTT 3.1
    assert r.recv() == (CONNACK, b"\x00\x00")


def test_malformed_payload_closes_without_puback(raw):
    r = raw()
    r.recv()
    r.publish("v1/devices/me/telemetry", b'{"a":', pid=7)
    assert r.recv() is None
    r = raw()
    r.recv()
    r.publish("v1/devices/me/telemetry", b"", pid=8)  # empty: Gson reads null, which is malformed
    assert r.recv() is None


def test_qos2_unknown_topic_and_empty_array(sim, raw):
    r = raw()
    r.recv()
    r.publish("v1/devices/me/telemetry", b'{"q2":1}', qos=2, pid=3)
    assert r.recv() == (PUBACK, b"\x00\x03")  # QoS 2 is answered with a PUBACK, not PUBREC (§3.4)
    r.publish("some/other/topic", b"x", pid=4)
    assert r.recv() == (PUBACK, b"\x00\x04")  # an unknown topic: an ordinary PUBACK
    r.publish("v1/devices/me/telemetry", b"[]", pid=5)  # no message, so no PUBACK ever
    r.publish("v1/gateway/telemetry", b'{"Dev A":[]}', pid=6)  # not a gateway: dropped, no PUBACK
    r.publish("v1/devices/me/telemetry", b'{"after":1}', pid=9)
    assert r.recv() == (PUBACK, b"\x00\x09")
    r.publish("v1/devices/me/telemetry", b'{temperature:25}', pid=10)  # Gson is lenient (the docs rely on it)
    assert r.recv() == (PUBACK, b"\x00\x0a")
    assert latest(sim, "q2,after,temperature") == {"q2": 1, "after": 1, "temperature": 25}


def test_subscribe_filters_are_exact_strings(raw):
    r = raw()
    r.recv()
    r.subscribe(1, ("v1/devices/me/#", 1), ("v1/devices/me/rpc/request/+", 2), ("v1/devices/me/rpc/request/5", 1),
                ("v2/fw/response/+/chunk/+", 0), ("v2/fw/response/7/chunk/+", 1), ("v1/devices/me/attributes", 0))
    assert r.recv() == (SUBACK, b"\x00\x01" + bytes([0x80, 0x01, 0x80, 0x00, 0x80, 0x00]))
    r.send(0xA2, b"\x00\x02" + _str("v1/devices/me/attributes"))
    assert r.recv() == (UNSUBACK, b"\x00\x02")
    r.send(0xC0, b"")
    assert r.recv() == (PINGRESP, b"")


def test_decoder_rules_close_the_connection(raw):
    r = raw()
    r.recv()
    r.publish("v1/devices/me/telemetry", b'{"a":1}', pid=0)  # packet id 0 (MqttCodecUtil.isValidMessageId)
    assert r.recv() is None
    r = raw()
    r.recv()
    r.publish("v1/devices/me/+", b'{"a":1}', pid=1)  # a wildcard in a PUBLISH topic
    assert r.recv() is None
    r = raw()
    r.recv()
    r.publish("v1/devices/me/telemetry", b"x" * 65536, pid=2)  # remaining length > 65536
    assert r.recv() is None
    r = raw(name="MQTT", level=9)  # an unknown protocol level: closed without a CONNACK
    assert r.recv() is None
    r = raw(level=5)  # MQTT 5: not modelled by tbsim, refused as an unacceptable protocol version
    assert r.recv() == (CONNACK, b"\x00\x01")


def test_ota_chunk_size_with_a_newline_closes(raw):
    r = raw()
    r.recv()
    r.publish("v2/fw/request/1/chunk/0", b"1024\n", pid=1)  # Integer.parseInt fails (mosquitto_pub -f of a file)
    assert r.recv() is None


def test_send_ack_on_validation_exception_profile(sim, raw):
    profile = sim.rest.post("/api/deviceProfile", {"name": "lenient-acks", "transportType": "MQTT", "profileData": {
        "transportConfiguration": {"type": "MQTT", "sendAckOnValidationException": True}}})
    sim.rest.post("/api/device", {"name": "Acks-1", "deviceProfileId": profile["id"]}, accessToken="ATOK")
    r = raw(user="ATOK")
    assert r.recv() == (CONNACK, b"\x00\x00")
    r.publish("v1/devices/me/telemetry", b'{"a":', pid=3)
    assert r.recv() == (PUBACK, b"\x00\x03")  # a plain PUBACK, which looks like success (§3.5)
    r.publish("v1/devices/me/telemetry", b'{"kept":1}', pid=4)
    assert r.recv() == (PUBACK, b"\x00\x04")
    assert latest(sim, "kept", name="Acks-1") == {"kept": 1}


def test_provisioning_session_rules(sim, raw):
    from tbsim import protoschema

    r = raw(user="provision")
    assert r.recv() == (CONNACK, b"\x00\x00")
    r.subscribe(1, ("/provision/response", 2), ("v1/devices/me/attributes", 1))
    assert r.recv() == (SUBACK, b"\x00\x01\x01\x80")
    msg = protoschema.builtin("transport.ProvisionDeviceRequestMsg")(
        deviceName="pb-1", provisionDeviceCredentialsMsg={"provisionDeviceKey": sim.provision_key,
                                                          "provisionDeviceSecret": sim.provision_secret})
    r.publish("/provision/request", msg.SerializeToString(), pid=2)  # not JSON: protobuf, answered in kind
    assert r.recv() == (PUBACK, b"\x00\x02")
    first, body = r.recv()
    assert first == PUBLISH | 2  # QoS 1 (the filter's granted QoS)
    topic_len = struct.unpack("!H", body[:2])[0]
    assert body[2:2 + topic_len] == b"/provision/response"
    answer = protoschema.builtin("transport.ProvisionDeviceResponseMsg").FromString(body[4 + topic_len:])
    assert answer.status == 1 and answer.credentialsValue  # SUCCESS and a token
    r = raw(user="provision")
    r.recv()
    r.publish("/provision", b'{"provisionDeviceKey":"k","provisionDeviceSecret":"s"}', pid=3)  # the docs' topic
    assert r.recv() == (PUBACK, b"\x00\x03")
    assert r.recv() is None  # any topic but /provision/request: PUBACK, then the close


def test_inactivity_timeout(tbsim_factory):
    sim = tbsim_factory("--mqtt-port", "0", "--mqtt-inactivity-timeout", "0.5")
    r = Raw(mqtt_port(sim))
    try:
        assert r.recv() == (CONNACK, b"\x00\x00")
        assert r.recv() is None  # keepAlive 60 s is ignored; no packet for 0.5 s closes the connection
        assert sim.wait_for_log("inactivity timeout")
    finally:
        r.close()
