# tbdevice.mqttcodec, sans-IO MQTT 3.1.1: the same functions run under pytest and on the unix port
# (tests/mpy_unit.py). The byte vectors are what paho-mqtt and amqtt write (mqtt_vectors.py).
from binascii import unhexlify

from mqtt_vectors import CLIENT, SERVER
from tbdevice import mqttcodec as c


def _encode(call):
    name, args = call[0], call[1:]
    if name == "connect":
        return c.connect(*args)
    if name == "publish":
        return c.publish(*args)
    if name == "subscribe":
        return c.subscribe(*args)
    if name == "puback":
        return c.puback(*args)
    return c.PINGREQ_PACKET if name == "pingreq" else c.DISCONNECT_PACKET


def _one(data):
    # The one packet in data, decoded as the link does: (type, first byte, body start).
    buf = bytearray(data)
    first, rl, hl = c.header(buf, 0, len(buf))
    assert hl + rl == len(buf), (hl, rl, len(buf))
    return c.kind(first, rl), first, hl, buf


def _malformed(fn, *args):
    try:
        fn(*args)
    except c.Malformed:
        return True
    return False


def test_client_packets_are_what_paho_writes():
    for name, wire, call in CLIENT:
        assert _encode(call) == unhexlify(wire), name


def test_server_packets_as_amqtt_writes_them():
    for name, wire, want in SERVER:
        t, first, i, buf = _one(unhexlify(wire))
        what = want[0]
        if what == "connack":
            assert t == c.CONNACK and c.connack(buf, i) == want[1:], name
        elif what == "ack":
            assert t == c.PUBACK and c.packet_id(buf, i) == want[1], name
        elif what == "suback":
            assert t == c.SUBACK and c.packet_id(buf, i) == want[1], name
            assert list(buf[i + 2:]) == want[2], name
        elif what == "pingresp":
            assert t == c.PINGRESP, name
        else:
            qos, a, b, pid, p = c.publish_parts(first, buf, i, len(buf))
            assert t == c.PUBLISH and (qos, bytes(buf[a:b]), pid) == (want[1], want[2].encode(), want[3]), name
            assert bytes(buf[p:]) == want[4], name


def test_header_needs_the_whole_length_and_at_most_four_bytes():
    assert c.header(b"", 0, 0) is None
    assert c.header(b"\x30", 0, 1) is None
    assert c.header(b"\x30\xff", 0, 2) is None  # continuation bit: more to come
    assert c.header(b"\x30\xff\x7f", 0, 3) == (0x30, 16383, 3)
    assert c.header(b"\x30\xff\xff\xff\x7f", 0, 5) == (0x30, c.MAX_REMAINING, 5)
    assert c.header(b"xx\xd0\x00", 2, 4) == (0xD0, 0, 2)  # at an offset
    assert _malformed(c.header, b"\x30\xff\xff\xff\xff\x01", 0, 6)
    for n in (0, 127, 128, 16383, 16384, 2097151, 2097152, c.MAX_REMAINING):
        v = c._varint(n)
        assert c.varint_size(n) == len(v)
        assert c.header(b"\x30" + v, 0, 1 + len(v)) == (0x30, n, 1 + len(v))


def test_publish_head_writes_in_place_for_any_length():
    buf = bytearray(2000)
    for n in (0, 1, 120, 121, 122, 1500):
        payload = bytes(i & 0xFF for i in range(n))
        i = c.publish_head(buf, b"v1/devices/me/telemetry", n, 1, 65535)
        buf[i:i + n] = payload
        assert bytes(buf[:i + n]) == c.publish("v1/devices/me/telemetry", payload, 1, 65535)
        t, first, j, pkt = _one(buf[:i + n])
        assert c.publish_parts(first, pkt, j, len(pkt))[3:] == (65535, i)


def test_bad_arguments_are_refused():
    for fn, args in ((c.connect, ("id", None, "pw")), (c.connect, ("id", "u", None, 70000)),
                     (c.publish, ("t", b"", 1, 0)), (c.publish, ("t", b"", 1, 65536)),
                     (c.subscribe, (0, [("t", 1)])), (c.subscribe, (1, []))):
        try:
            fn(*args)
            assert False, (fn, args)
        except ValueError:
            pass


def test_connect_fields():
    # client id only (MQTT_BASIC by client id), empty client id, no keep-alive, not clean
    p = c.connect("", None, None, 0)
    assert p == b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x00\x00\x00"
    p = c.connect("cid", None, None, 30, clean=False)
    assert p[9] == 0 and p[10:12] == b"\x00\x1e" and p.endswith(b"\x00\x03cid")
    p = c.connect("c", "provision", None)
    assert p[9] == 0x82 and p.endswith(b"\x00\x09provision")
    p = c.connect("c", "ü", "")  # UTF-8 lengths; an empty password is a password
    assert p[9] == 0xC2 and p.endswith(b"\x00\x02\xc3\xbc\x00\x00")


def test_malformed_server_packets():
    bad = [
        b"\x10\x02\x00\x00",  # CONNECT: a client never receives it
        b"\x82\x02\x00\x01",  # SUBSCRIBE
        b"\xc0\x00",  # PINGREQ
        b"\x00\x00",  # reserved type 0
        b"\xf0\x00",  # reserved type 15
        b"\x36\x05\x00\x01t\x00\x01",  # PUBLISH QoS 3
        b"\x21\x02\x00\x00",  # CONNACK with flags
        b"\x20\x03\x00\x00\x00",  # CONNACK of 3 bytes
        b"\x40\x01\x00",  # PUBACK of 1 byte
        b"\xd0\x01\x00",  # PINGRESP with a body
        b"\x90\x02\x00\x01",  # SUBACK without a code
        b"\x30\x01\x00",  # PUBLISH without a whole topic length
        b"\x32\x03\x00\x01t",  # QoS 1 PUBLISH without a packet id
        b"\x62\x02\x00\x01",  # PUBREL, flags 0010: fine; PUBREL with 0000 is not (below)
    ]
    for data in bad[:-1]:
        buf = bytearray(data)
        first, rl, hl = c.header(buf, 0, len(buf))
        try:
            c.kind(first, rl)
            if first >> 4 == c.PUBLISH:
                c.publish_parts(first, buf, hl, hl + rl)
            else:
                c.connack(buf, hl)
            assert False, data
        except c.Malformed:
            pass
    assert c.kind(0x62, 2) == c.PUBREL
    assert _malformed(c.kind, 0x60, 2)
    # topic length beyond the packet
    buf = bytearray(b"\x30\x05\x00\x09abc")
    assert _malformed(c.publish_parts, 0x30, buf, 2, 7)
    buf = bytearray(b"\x30\x05\x00\x00abc")  # an empty topic name (§4.7.3)
    assert _malformed(c.publish_parts, 0x30, buf, 2, 7)
    assert _malformed(c.connack, bytearray(b"\x02\x00"), 0)


def test_garbage_never_raises_anything_but_malformed():
    # Deterministic pseudo-random bytes and every truncation of the vectors: decoding either
    # works, asks for more (None) or raises Malformed; nothing else escapes.
    seed = 12345
    samples = [unhexlify(w) for _, w, _ in SERVER]
    for k in range(300):
        n = k % 12 + 1
        b = bytearray(n)
        for j in range(n):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            b[j] = seed >> 16 & 0xFF
        samples.append(bytes(b))
    for s in [unhexlify(w) for _, w, _ in SERVER]:
        samples += [s[:j] for j in range(len(s))]
    for data in samples:
        buf = bytearray(data)
        try:
            h = c.header(buf, 0, len(buf))
            if h is None:
                continue
            first, rl, hl = h
            if hl + rl > len(buf):
                continue  # the link waits for the rest
            t = c.kind(first, rl)
            if t == c.PUBLISH:
                c.publish_parts(first, buf, hl, hl + rl)
            elif t == c.CONNACK:
                c.connack(buf, hl)
            elif rl:
                c.packet_id(buf, hl)
        except c.Malformed:
            pass
