# MQTT 3.1.1 packets (OASIS MQTT 3.1.1, §2 and §3), sans-IO: what a ThingsBoard device sends
# (CONNECT, PUBLISH at QoS 0/1, PUBACK, SUBSCRIBE, PINGREQ, DISCONNECT) and what it receives
# (CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP). No sockets here: the link (tbdevice.mqttlink)
# reads bytes into its buffer and asks this module where a packet ends and what it holds.
#
# Decoding works on (buf, start, end) offsets into the caller's buffer, so that routing a
# PUBLISH by its topic allocates nothing (bytearray.startswith/find take offsets). Anything
# the 3.1.1 rules forbid in a packet a server sends raises Malformed, never IndexError.
try:
    from micropython import const
except ImportError:  # CPython (tests, type checks)

    def const(x):
        return x


# Control packet types (§2.2.1).
CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
PUBREC = const(5)
PUBREL = const(6)
PUBCOMP = const(7)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBSCRIBE = const(10)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
MAX_REMAINING = const(268435455)  # four bytes of Remaining Length (§2.2.3)
_CLEAN = const(0x02)  # CONNECT flags (§3.1.2.3)
_PASSWORD = const(0x40)
_USER = const(0x80)

# What a server may send a client, and the fixed-header flags each must carry (§2.2.2):
# PUBREL's are 0010, PUBLISH's are its DUP/QoS/RETAIN (checked apart), the others 0000.
_FROM_SERVER = (CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP)


class Malformed(ValueError):
    """A packet the 3.1.1 rules forbid (§4.8: the connection must be closed)."""


def _str(s):
    # A UTF-8 string field's bytes (§1.5.3), at most 65535 of them.
    b = s.encode() if isinstance(s, str) else bytes(s)
    if len(b) > 65535:
        raise ValueError("MQTT string longer than 65535 bytes")
    return b


def _varint(n):
    # Remaining Length as bytes (§2.2.3).
    out = bytearray()
    while True:
        d = n & 0x7F
        n >>= 7
        out.append(d | 0x80 if n else d)
        if not n:
            return out


def varint_size(n):
    """How many bytes Remaining Length n takes."""
    return 1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4


def connect(client_id, username=None, password=None, keepalive=60, clean=True):
    """A CONNECT (§3.1): protocol "MQTT" level 4, no will. client_id may be empty with clean
    (§3.1.3.1); a password needs a user name (§3.1.2.9). keepalive in seconds (0: none)."""
    if password is not None and username is None:
        raise ValueError("MQTT 3.1.1: a password needs a user name")
    if not 0 <= keepalive <= 65535:
        raise ValueError("keepalive must be 0-65535 s")
    flags = _CLEAN if clean else 0
    body = bytearray(b"\x00\x04MQTT\x04\x00")
    body += keepalive.to_bytes(2, "big")
    for field, flag in ((client_id, 0), (username, _USER), (password, _PASSWORD)):
        if field is None:
            continue
        b = _str(field)
        body += len(b).to_bytes(2, "big")
        body += b
        flags |= flag
    body[7] = flags
    return bytes(b"\x10" + _varint(len(body)) + body)


def publish_head(buf, topic, n, qos=0, pid=0, retain=False):
    """Write the fixed header, topic and packet id of a PUBLISH (§3.3) carrying n payload
    bytes at the start of buf; returns where the payload goes. topic: bytes, no wildcard
    (§4.7.1.1); pid 1-65535 when qos > 0 (§2.3.1)."""
    t = len(topic)
    if qos:
        if not 0 < pid < 65536:
            raise ValueError("packet id must be 1-65535")
        rl = t + 4 + n
    else:
        rl = t + 2 + n
    if rl > MAX_REMAINING:
        raise ValueError("PUBLISH too large")
    buf[0] = 0x30 | qos << 1 | (1 if retain else 0)
    i = 1
    while True:
        d = rl & 0x7F
        rl >>= 7
        buf[i] = d | 0x80 if rl else d
        i += 1
        if not rl:
            break
    buf[i] = t >> 8
    buf[i + 1] = t & 0xFF
    i += 2
    buf[i:i + t] = topic
    i += t
    if qos:
        buf[i] = pid >> 8
        buf[i + 1] = pid & 0xFF
        i += 2
    return i


def publish(topic, payload=b"", qos=0, pid=0, retain=False):
    """A whole PUBLISH as bytes (allocates: for tests and one-off packets)."""
    topic = _str(topic)
    if isinstance(payload, str):
        payload = payload.encode()
    buf = bytearray(9 + len(topic) + len(payload))
    i = publish_head(buf, topic, len(payload), qos, pid, retain)
    buf[i:i + len(payload)] = payload
    return bytes(buf[:i + len(payload)])


def subscribe(pid, filters):
    """A SUBSCRIBE (§3.8) of [(topic filter, qos), ...] with packet id pid (1-65535)."""
    if not 0 < pid < 65536 or not filters:
        raise ValueError("SUBSCRIBE needs a packet id 1-65535 and at least one filter")
    body = bytearray(pid.to_bytes(2, "big"))
    for f, q in filters:
        b = _str(f)
        body += len(b).to_bytes(2, "big")
        body += b
        body.append(q)
    return bytes(b"\x82" + _varint(len(body)) + body)


def puback_into(buf, pid):
    """The 4 bytes of a PUBACK (§3.4) for pid into buf."""
    buf[0] = 0x40
    buf[1] = 2
    buf[2] = pid >> 8
    buf[3] = pid & 0xFF


def puback(pid):
    b = bytearray(4)
    puback_into(b, pid)
    return bytes(b)


# ---- decoding ---------------------------------------------------------------------------
def frame(buf, start, end):
    """The fixed header at buf[start:end] (§2.2) without allocating, for the receive path:
    -1 while incomplete, else remaining length << 3 | header size (2-5 bytes). A Remaining
    Length of more than four bytes is Malformed (§2.2.3)."""
    n = 0
    shift = 0
    i = start + 1
    while i < end:
        d = buf[i]
        n |= (d & 0x7F) << shift
        i += 1
        if not d & 0x80:
            return n << 3 | (i - start)
        shift += 7
        if shift > 21:
            raise Malformed("Remaining Length longer than four bytes")
    return -1


def header(buf, start, end):
    """frame() as (first byte, remaining length, header size), or None while incomplete."""
    f = frame(buf, start, end)
    return None if f < 0 else (buf[start], f >> 3, f & 7)


def kind(first, rl):
    """The packet type of a packet a server sent, checked against its fixed-header flags
    and its remaining length rl; Malformed for what a client may not receive."""
    t = first >> 4
    if t not in _FROM_SERVER:
        raise Malformed("packet type %d is not sent to a client" % t)
    f = first & 0x0F
    if t == PUBLISH:
        q = (f >> 1) & 3
        if q == 3:
            raise Malformed("PUBLISH with QoS 3")  # §3.3.1.2
        if rl < (4 if q else 2):
            raise Malformed("PUBLISH too short")
        return t
    if f != (2 if t == PUBREL else 0):
        raise Malformed("packet type %d with flags %d" % (t, f))
    if t == PINGRESP:
        ok = rl == 0
    elif t == SUBACK:
        ok = rl >= 3
    else:
        ok = rl == 2  # CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK
    if not ok:
        raise Malformed("packet type %d with remaining length %d" % (t, rl))
    return t


def connack(buf, i):
    """(session present, return code) of a CONNACK body at buf[i] (§3.2.2)."""
    if buf[i] & 0xFE:
        raise Malformed("CONNACK with reserved flags set")  # §3.2.2.1
    return buf[i] & 1, buf[i + 1]


def packet_id(buf, i):
    """The packet id at buf[i] (PUBACK, SUBACK, UNSUBACK, PUBREC, PUBREL, PUBCOMP)."""
    return buf[i] << 8 | buf[i + 1]


def publish_parts(first, buf, i, end):
    """A PUBLISH whose body is buf[i:end] (§3.3.2): (qos, topic start, topic end, packet id
    (0 at QoS 0), payload start). The payload is buf[payload start:end]."""
    qos = (first >> 1) & 3
    t = buf[i] << 8 | buf[i + 1]
    a = i + 2
    b = a + t
    if t == 0 or b + (2 if qos else 0) > end:
        raise Malformed("PUBLISH topic length %d does not fit" % t)
    if qos:
        # ThingsBoard's packet ids wrap to 0 after 65535 (spec-mqtt §3.3): taken as it is.
        return qos, a, b, buf[b] << 8 | buf[b + 1], b + 2
    return 0, a, b, 0, b
