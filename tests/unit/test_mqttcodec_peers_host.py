# tbdevice.mqttcodec against real MQTT peers on CPython: paho-mqtt (a client: what it writes is what
# ours must write) and amqtt (the codec tbsim's MQTT server is built on: it must read what ours
# writes, and ours must read what it writes), plus hypothesis round trips. The byte vectors that
# the unix port checks (mqtt_vectors.py) are asserted here to be the peers' own output.
import asyncio
import socket
import threading
from binascii import unhexlify

import paho.mqtt.client as mqtt
from amqtt.mqtt.publish import PublishPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from mqtt_vectors import CLIENT, SERVER
from tbdevice import mqttcodec as c
from tbsim import mqttwire

WAIT = 10.0


class _Capture:
    """A TCP listener that answers paho's CONNECT with a CONNACK and splits what paho sends into
    packets with our header(); tests wait for the n-th packet, never on a clock."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.packets = []
        self.conn = None
        self.cond = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.srv.accept()
        with self.cond:
            self.conn = conn
        buf = bytearray()
        while True:
            d = conn.recv(4096)
            if not d:
                break
            buf += d
            while True:
                h = c.header(buf, 0, len(buf))
                if h is None or h[1] + h[2] > len(buf):
                    break
                n = h[1] + h[2]
                pkt, buf = bytes(buf[:n]), buf[n:]
                if not self.packets:
                    conn.sendall(mqttwire.connack(False, 0))
                with self.cond:
                    self.packets.append(pkt)
                    self.cond.notify_all()

    def wait(self, n):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.packets) >= n, WAIT), self.packets
            return self.packets[n - 1]


def test_paho_writes_the_client_vectors_and_ours_are_the_same():
    cap = _Capture()
    cl = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev1", protocol=mqtt.MQTTv311)
    cl.username_pw_set("A1_TEST_TOKEN", "pw")
    connected = threading.Event()
    cl.on_connect = lambda *_a: connected.set()
    cl.connect("127.0.0.1", cap.port, keepalive=60)
    cl.loop_start()
    try:
        got = {"CONNECT with user and password": cap.wait(1)}
        assert connected.wait(WAIT)
        i0 = cl.publish("v1/devices/me/telemetry", b'{"temperature":21.5}', 0)
        got["PUBLISH QoS 0"] = cap.wait(2)
        i1 = cl.publish("v1/devices/me/telemetry", b'{"temperature":21.5}', 1)
        got["PUBLISH QoS 1"] = cap.wait(3)
        _, mid = cl.subscribe([("v1/devices/me/attributes", 1), ("v1/devices/me/rpc/request/+", 1)])
        got["SUBSCRIBE two filters"] = cap.wait(4)
        assert (i0.mid, i1.mid, mid) == (1, 2, 3)  # the packet ids the vectors carry
        cap.conn.sendall(mqttwire.publish("v1/devices/me/rpc/request/0", b'{"method":"x"}', 1, 513))
        got["PUBACK"] = cap.wait(5)  # paho acknowledges the server's QoS 1 PUBLISH
        cl._send_pingreq()  # paho pings only after keepalive seconds; this is that code path
        got["PINGREQ"] = cap.wait(6)
        cl.disconnect()
        got["DISCONNECT"] = cap.wait(7)
    finally:
        cl.loop_stop()
    for name, wire, call in CLIENT:
        assert got[name] == unhexlify(wire), name
    import test_mqttcodec

    test_mqttcodec.test_client_packets_are_what_paho_writes()


def test_amqtt_writes_the_server_vectors():
    built = {
        "CONNACK accepted": mqttwire.connack(False, 0),
        "CONNACK refused 0x05, session present": mqttwire.connack(True, 5),
        "PUBACK": mqttwire.puback(7),
        "SUBACK granted 1 and refused": mqttwire.suback(3, [1, 0x80]),
        "PINGRESP": mqttwire.pingresp(),
        "PUBLISH QoS 0": mqttwire.publish("v1/devices/me/attributes", b'{"k":1}', 0, 0),
        "PUBLISH QoS 1 chunk": mqttwire.publish("v2/fw/response/1/chunk/0", bytes(range(200)), 1, 65535),
    }
    for name, wire, _ in SERVER:
        assert built[name] == unhexlify(wire), name


def _amqtt_reads(data, first=False):
    # tbsim's reader: amqtt's decoder plus the checks ThingsBoard's Netty decoder makes
    async def go():
        r = asyncio.StreamReader()
        r.feed_data(data)
        r.feed_eof()
        pkt = await mqttwire.read_packet(r, first=first)
        assert await r.read() == b""  # one packet, all of it consumed
        return pkt

    return asyncio.run(go())


def test_amqtt_reads_what_ours_writes():
    p = _amqtt_reads(c.connect("cid-1", "TOKEN", "secret", 45), first=True)
    assert (mqttwire.client_id(p), p.payload.username, p.payload.password) == ("cid-1", "TOKEN", "secret")
    assert p.variable_header.keep_alive == 45 and p.variable_header.clean_session_flag
    p = _amqtt_reads(c.connect("", None, None, 0), first=True)
    assert mqttwire.client_id(p) == "" and p.payload.username is None
    p = _amqtt_reads(c.publish("v1/devices/me/attributes/request/12", b"{}", 1, 9))
    assert (p.variable_header.topic_name, p.variable_header.packet_id, p.qos, p.data) == (
        "v1/devices/me/attributes/request/12", 9, 1, b"{}")
    p = _amqtt_reads(c.subscribe(4, [("v1/devices/me/attributes", 1), ("v2/fw/response/+/chunk/+", 0)]))
    assert p.variable_header.packet_id == 4
    assert p.payload.topics == [("v1/devices/me/attributes", 1), ("v2/fw/response/+/chunk/+", 0)]
    assert _amqtt_reads(c.puback(300)).variable_header.packet_id == 300
    assert _amqtt_reads(c.PINGREQ_PACKET).fixed_header.packet_type == mqttwire.PINGREQ
    assert _amqtt_reads(c.DISCONNECT_PACKET).fixed_header.packet_type == mqttwire.DISCONNECT


_topics = st.text(st.characters(blacklist_characters="+#\x00", blacklist_categories=("Cs",)), min_size=1,
                  max_size=80)


@settings(max_examples=200, deadline=None)
@given(_topics, st.binary(max_size=3000), st.integers(0, 1), st.integers(1, 65535))
def test_publish_is_amqtt_s_both_ways(topic, payload, qos, pid):
    ours = c.publish(topic, payload, qos, pid)
    theirs = PublishPacket.build(topic, payload, pid if qos else None, False, qos, False).to_bytes()
    assert ours == theirs
    buf = bytearray(theirs)
    first, rl, hl = c.header(buf, 0, len(buf))
    assert c.kind(first, rl) == c.PUBLISH and hl + rl == len(buf)
    q, a, b, got_pid, p = c.publish_parts(first, buf, hl, len(buf))
    assert (q, bytes(buf[a:b]).decode(), got_pid if q else None, bytes(buf[p:])) == (
        qos, topic, pid if qos else None, payload)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40), st.one_of(st.none(), st.text(max_size=40)), st.one_of(st.none(), st.text(max_size=40)),
       st.integers(0, 65535))
def test_connect_is_read_back_by_amqtt(cid, user, password, keepalive):
    if user is None:
        password = None  # a password needs a user name in 3.1.1
    p = _amqtt_reads(c.connect(cid, user, password, keepalive), first=True)
    assert mqttwire.client_id(p) == cid and p.payload.username == user and p.payload.password == password
    assert p.variable_header.keep_alive == keepalive


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_are_malformed_or_read(data):
    buf = bytearray(data)
    try:
        h = c.header(buf, 0, len(buf))
        if h is None or h[1] + h[2] > len(buf):
            return
        first, rl, hl = h
        t = c.kind(first, rl)
        if t == c.PUBLISH:
            c.publish_parts(first, buf, hl, hl + rl)
        elif t == c.CONNACK:
            c.connack(buf, hl)
    except c.Malformed:
        pass
