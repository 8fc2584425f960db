# CoAP codec tests, shared by pytest (CPython) and tests/mpy_unit.py (unix port).
from coap import message as m
from coap.errors import FormatError
from vectors import MALFORMED, VECTORS

try:
    from binascii import hexlify, unhexlify
except ImportError:
    from ubinascii import hexlify, unhexlify


def _build(t, code, mid, tok, opts, payload):
    msg = m.Message(t, code, mid, unhexlify(tok), unhexlify(payload))
    for num, val in opts:
        msg.add(num, unhexlify(val))
    return msg


def test_encode_vectors():
    for name, wire, fields in VECTORS:
        got = hexlify(_build(*fields).encode()).decode()
        assert got == wire, "%s: %s != %s" % (name, got, wire)


def test_decode_vectors():
    for name, wire, (t, code, mid, tok, opts, payload) in VECTORS:
        msg = m.decode(unhexlify(wire))
        assert (msg.mtype, msg.code, msg.mid) == (t, code, mid), name
        assert msg.token == unhexlify(tok), name
        assert msg.options == [(n, unhexlify(v)) for n, v in opts], name
        assert msg.payload == unhexlify(payload), name


def test_decode_from_reused_buffer():
    # decode() copies out of the buffer, so the receive buffer can be reused at once.
    buf = bytearray(64)
    wire = unhexlify(VECTORS[3][1])
    buf[: len(wire)] = wire
    msg = m.decode(memoryview(buf), len(wire))
    for i in range(len(buf)):
        buf[i] = 0
    assert msg.payload == b'{"t":1}'
    assert msg.path() == "api/v1/TOKEN/telemetry"


def test_malformed_raise_format_error():
    for name, wire in MALFORMED:
        try:
            m.decode(unhexlify(wire))
        except FormatError:
            continue
        assert False, name + " was accepted"


def test_uint_options_minimal():
    assert m.uint_bytes(0) == b""
    assert m.uint_bytes(1) == b"\x01"
    assert m.uint_bytes(255) == b"\xff"
    assert m.uint_bytes(256) == b"\x01\x00"
    assert m.uint_bytes(0xFFFFFF) == b"\xff\xff\xff"
    for v in (0, 1, 255, 256, 65535, 65536, 2**24 - 1, 2**32 - 1):
        assert m.uint_value(m.uint_bytes(v)) == v


def test_observe_zero_survives():
    msg = m.Message(m.CON, m.GET, 1, b"\x01").add(m.OBSERVE, 0).add(m.URI_PATH, "rpc")
    back = m.decode(msg.encode())
    assert back.opt(m.OBSERVE) == b""
    assert back.uint(m.OBSERVE) == 0


def test_add_keeps_repeated_options_in_order():
    # Uri-Path segments must not be reordered (MicroPython's sort is not stable).
    msg = m.Message()
    for seg in ("api", "v1", "tok", "telemetry"):
        msg.add(m.URI_QUERY if seg == "tok" else m.URI_PATH, seg)
    msg.add(m.CONTENT_FORMAT, 50)
    assert [n for n, _ in msg.options] == [11, 11, 11, 12, 15]
    assert m.decode(msg.encode()).path() == "api/v1/telemetry"


def test_encode_into_matches_encode():
    msg = m.Message(m.NON, m.POST, 0xFFFF, b"\x01\x02\x03\x04", b"xyz").add(m.URI_PATH, "a")
    buf = bytearray(64)
    n = m.encode_into(buf, m.NON, m.POST, 0xFFFF, b"\x01\x02\x03\x04", m.encode_options(msg.options), b"xyz")
    assert bytes(buf[:n]) == msg.encode()


def test_encode_into_too_small():
    try:
        m.encode_into(bytearray(8), m.CON, m.POST, 1, b"", b"", b"x" * 10)
    except ValueError:
        return
    assert False


def test_code_str():
    assert m.code_str(m.CONTENT) == "2.05"
    assert m.code_str(m.BAD_REQUEST) == "4.00"
    assert m.code_str(m.CONTINUE) == "2.31"
    assert m.code_str(m.INTERNAL_SERVER_ERROR) == "5.00"
