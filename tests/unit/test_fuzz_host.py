# Hostile input on CPython with hypothesis (issue 8), beyond the codec fuzzing of
# test_codec_aiocoap_host.py (coap.message.decode) and test_protobuf_oracle_host.py (the protobuf
# wire decoder): the client's datagram handler (coap.endpoint.Endpoint._on_datagram) with live
# exchanges and an observation to hit, and the device's payload decoders (JSON and protobuf
# codecs) on random bytes. Nothing but the documented errors may come out; tables stay bounded.
import io
import struct
import sys
import time
import types

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# The MicroPython names lib/coap uses, for CPython: const(), wrapping milliseconds, and a
# BytesIO that takes the size to reserve and readinto(buf, n).
sys.modules.setdefault("micropython", types.SimpleNamespace(const=lambda x: x))
if not hasattr(time, "ticks_ms"):
    time.ticks_ms = lambda: int(time.monotonic() * 1000) & 0x3FFFFFFF
    time.ticks_diff = lambda a, b: ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000
    time.ticks_add = lambda a, b: (a + b) & 0x3FFFFFFF


class _BytesIO(io.BytesIO):
    def __init__(self, n):
        super().__init__()

    def readinto(self, buf, n=-1):
        return super().readinto(buf if n < 0 else memoryview(buf)[:n])


import coap.client as client_mod  # noqa: E402 (after the stand-ins)
import coap.endpoint  # noqa: E402

coap.endpoint.io = type("io", (), {"BytesIO": _BytesIO})
from coap.exchange import Exchange
from coap import message as m
from tbdevice import errors
from tbdevice.codec import JsonCodec
from tbdevice.protocodec import ProtoCodec

TOKENS = (0x01020304, 0x0A0B0C0D)  # a request and an observation waiting
MIDS = (0x1234, 0x1235)


class _Sink:
    def __init__(self):
        self.sent = []

    def send(self, data, n=-1):
        self.sent.append(bytes(data if n < 0 else data[:n]))


def _client():
    c = client_mod.Client("127.0.0.1", 5683, transport=_Sink())
    seen = []
    req = Exchange(TOKENS[0])
    req.mid = MIDS[0]
    obs = Exchange(TOKENS[1], on_response=seen.append)
    obs.mid = MIDS[1]
    obs.msg = m.Message(m.ACK, m.CONTENT, MIDS[1], struct.pack("!I", TOKENS[1]))  # registered already
    c._by_token = {TOKENS[0]: req, TOKENS[1]: obs}
    c._by_mid = {MIDS[0]: req, MIDS[1]: obs}
    return c, req, seen


def _shaped():
    # Datagrams a CoAP parser gets deep into: a version-1 header, any type, token lengths around
    # ours (often one of our live tokens), message IDs often ours, then any bytes.
    tok = st.one_of(st.sampled_from([struct.pack("!I", t) for t in TOKENS]), st.binary(max_size=8))
    mid = st.one_of(st.sampled_from(MIDS), st.integers(0, 0xFFFF))
    code = st.one_of(st.sampled_from([0, 1, 2, 0x41, 0x44, 0x45, 0x80, 0xA0]), st.integers(0, 255))
    return st.builds(lambda t, tk, c, i, rest, tklx: struct.pack("!BBH", 0x40 | t << 4 | (tklx if tklx is not None
                     else len(tk)), c, i) + tk + rest,
                     st.integers(0, 3), tok, code, mid, st.binary(max_size=120),
                     st.one_of(st.none(), st.integers(0, 15)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=1300), _shaped()), min_size=1, max_size=20))
def test_datagram_handler_takes_anything(datagrams):
    c, req, seen = _client()
    for d in datagrams:
        before = len(c.transport.sent)
        c._on_datagram(d)  # never raises: bad input is counted (rejected) and maybe RST
        replies = c.transport.sent[before:]
        assert len(replies) <= 1 and all(len(r) == 4 and r[0] >> 6 == 1 and r[0] >> 4 & 3 in (m.ACK, m.RST)
                                         and r[1] == 0 for r in replies), replies
    assert set(c._by_token) <= set(TOKENS) and set(c._by_mid) <= set(MIDS)  # nothing added
    assert len(c._dmid) == 16
    assert all(isinstance(x, m.Message) for x in seen)
    if req.msg is not None:
        assert isinstance(req.msg, m.Message) and req.msg.token == struct.pack("!I", TOKENS[0])


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                        max_leaves=20)


def _payloads():
    import json

    return st.one_of(st.binary(max_size=300), _JSONISH.map(lambda v: json.dumps(v).encode()),
                     st.dictionaries(st.sampled_from(["id", "method", "params", "shared", "client", "deleted", "x"]),
                                     _JSONISH, max_size=4).map(lambda v: json.dumps(v).encode()))


CODECS = (JsonCodec(), ProtoCodec())
DECODERS = ("attribute_update", "attribute_response", "rpc_request", "rpc_response")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_payloads(), st.sampled_from(DECODERS), st.sampled_from(CODECS))
def test_payload_decoders_raise_only_tb_errors(payload, name, codec):
    try:
        getattr(codec, name)(payload)
    except errors.TbError:
        pass  # BadPayload and friends: the downlink loop logs it and goes on
