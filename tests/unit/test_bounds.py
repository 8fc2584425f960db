# Every size the device takes from the network is bounded (issue 8): an input over a bound is
# an error (FormatError, BadPayload), never a crash, and leaves the heap where it was.
# Plain test functions: pytest on CPython, tests/mpy_unit.py on the unix port (where the heap
# is measured with gc.mem_alloc() after gc.collect()).
import gc

from coap import message as m
from coap.errors import FormatError
from tbdevice import codec as jc
from tbdevice import errors
from tbdevice.attributes import SharedAttributes
from tbdevice.codec import JsonCodec

_ROUNDS = 20
_SLACK = 1024  # bytes: interned strings, a grown dict or two; a leak of a round's input would be 20x more


def _heap():
    gc.collect()
    return gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0


def _refused_without_leak(fn, exc):
    """fn() raises exc every time, and the heap is back where it was afterwards."""
    try:  # once first: imports, interned names and lazily made tables are not a leak
        fn()
    except exc:
        pass
    before = _heap()
    for _ in range(_ROUNDS):
        try:
            fn()
        except exc:
            continue
        raise AssertionError("no %s" % exc.__name__)
    grown = _heap() - before
    assert grown <= _SLACK, "heap grew by %d bytes" % grown


def _datagram(n_options, payload=b""):
    # a 2.05 ACK with a 4-byte token, n zero-length options of one number (delta 0 after the first)
    opts = bytes([m.URI_PATH << 4]) + b"\x00" * (n_options - 1) if n_options else b""
    return b"\x64\x45\x12\x34ABCD" + opts + (b"\xff" + payload if payload else b"")


def test_option_count_is_bounded():
    assert len(m.decode(_datagram(m.MAX_OPTIONS)).options) == m.MAX_OPTIONS
    data = _datagram(1200)  # one datagram of one-byte options: would be 1200 tuples
    _refused_without_leak(lambda: m.decode(data), FormatError)


def test_json_size_is_bounded():
    c = JsonCodec()
    big = b'{"k":"' + b"a" * jc.MAX_BYTES + b'"}'
    _refused_without_leak(lambda: c.attribute_update(big), errors.BadPayload)
    _refused_without_leak(lambda: c.rpc_request(big), errors.BadPayload)


def test_json_depth_is_bounded():
    c = JsonCodec()
    deep = b'{"id":1,"method":"m","params":' + b"[" * 200 + b"]" * 200 + b"}"
    assert len(deep) < jc.MAX_BYTES
    _refused_without_leak(lambda: c.rpc_request(deep), errors.BadPayload)
    ok = b'{"id":1,"method":"m","params":' + b"[" * 20 + b"]" * 20 + b"}"
    assert c.rpc_request(ok)["id"] == 1


def test_json_item_count_is_bounded():
    c = JsonCodec()
    many = b'{"id":1,"method":"m","params":[' + b"0," * 600 + b"0]}"
    assert len(many) < jc.MAX_BYTES
    _refused_without_leak(lambda: c.rpc_request(many), errors.BadPayload)


def test_bad_json_is_an_error():
    c = JsonCodec()
    for bad in (b"{", b'{"a":1', b"\xff\xfe", b"[1,2"):  # (MicroPython's parser takes {"a":} as {})
        _refused_without_leak(lambda: c.attribute_update(bad), errors.BadPayload)


def test_protobuf_size_is_bounded():
    from tbdevice.protocodec import ProtoCodec

    c = ProtoCodec()
    big = b"\x0a" + b"\xff\x3f" + b"a" * jc.MAX_BYTES  # one length-delimited field, over the bound
    _refused_without_leak(lambda: c.attribute_update(big), errors.BadPayload)


def test_attribute_cache_keys_are_bounded():
    a = SharedAttributes()
    seen = []
    a.on_any(lambda changed, deleted: seen.append(len(changed)))
    a.replace({"k%d" % i: i for i in range(SharedAttributes.MAX_KEYS)})
    a.apply({"extra": 1})
    assert len(a.values) == SharedAttributes.MAX_KEYS and "extra" not in a.values and a.overflow == 1
    assert seen[-1] == 1  # still reported to the application
    a.apply({"k0": 5})  # a kept key still changes
    assert a.values["k0"] == 5
