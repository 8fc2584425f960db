# Our codec cross-checked both ways against aiocoap's, plus hypothesis round trips.
from aiocoap import message as am
from aiocoap.numbers import codes as acodes
from hypothesis import given, settings
from hypothesis import strategies as st

from coap import message as m
from coap.errors import FormatError
from vectors import VECTORS

try:
    from binascii import unhexlify
except ImportError:
    pass

_KNOWN = [m.IF_MATCH, m.URI_HOST, m.ETAG, m.OBSERVE, m.URI_PORT, m.LOCATION_PATH, m.URI_PATH,
          m.CONTENT_FORMAT, m.MAX_AGE, m.URI_QUERY, m.ACCEPT, m.BLOCK2, m.BLOCK1, m.SIZE2, m.SIZE1]


def test_vectors_decode_the_same_in_aiocoap():
    for name, wire, (t, code, mid, tok, opts, payload) in VECTORS:
        if name in ("delta ext14", "length ext14"):
            continue  # aiocoap validates those options' formats; ours are synthetic
        a = am.Message.decode(unhexlify(wire))
        assert (int(a.mtype), int(a.code), a.mid, a.token) == (t, code, mid, unhexlify(tok)), name
        assert a.payload == unhexlify(payload), name
        b = am.Message(mtype=a.mtype, code=a.code, mid=a.mid, token=a.token, payload=a.payload)
        for o in a.opt.option_list():
            b.opt.add_option(o)
        assert b.encode() == unhexlify(wire), name


def test_thingsboard_request_as_aiocoap_builds_it():
    a = am.Message(mtype=0, code=acodes.Code.POST, mid=7, token=b"\x01\x02",
                   uri_path=("api", "v1", "TOKEN", "attributes"), payload=b"{}")
    a.opt.uri_query = ("clientKeys=a,b", "sharedKeys=c")
    a.opt.observe = 0
    ours = m.Message(m.CON, m.POST, 7, b"\x01\x02", b"{}").add(m.OBSERVE, 0)
    for s in ("api", "v1", "TOKEN", "attributes"):
        ours.add(m.URI_PATH, s)
    ours.add(m.URI_QUERY, "clientKeys=a,b").add(m.URI_QUERY, "sharedKeys=c")
    assert ours.encode() == a.encode()
    back = m.decode(a.encode())
    assert back.opts(m.URI_QUERY) == [b"clientKeys=a,b", b"sharedKeys=c"]
    assert back.uint(m.OBSERVE) == 0


_opt = st.tuples(st.sampled_from(_KNOWN + [2000, 65000]), st.binary(max_size=300))
_msg = st.builds(
    lambda t, c, mid, tok, opts, p: (t, c, mid, tok, opts, p),
    st.integers(0, 3), st.integers(1, 255), st.integers(0, 0xFFFF), st.binary(max_size=8),
    st.lists(_opt, max_size=8), st.binary(max_size=1100),
)


@settings(max_examples=300, deadline=None)
@given(_msg)
def test_roundtrip(fields):
    t, c, mid, tok, opts, p = fields
    msg = m.Message(t, c, mid, tok, p)
    for num, val in opts:
        msg.add(num, val)
    back = m.decode(msg.encode())
    assert (back.mtype, back.code, back.mid, back.token, back.payload) == (t, c, mid, tok, p)
    # Repeated options keep their relative order; different numbers come out ascending.
    assert back.options == sorted(back.options, key=lambda o: o[0])
    for num in set(n for n, _ in opts):
        assert back.opts(num) == [v for n, v in opts if n == num]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_escapes(data):
    try:
        m.decode(data)
    except FormatError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3), st.integers(1, 200), st.integers(0, 0xFFFF), st.binary(max_size=8),
       st.lists(st.text(min_size=1, max_size=20), max_size=5), st.binary(max_size=200))
def test_aiocoap_encodes_we_decode(t, c, mid, tok, path, payload):
    a = am.Message(mtype=t, code=c, mid=mid, token=tok, payload=payload, uri_path=path)
    back = m.decode(a.encode())
    assert back.path() == "/".join(path) and back.payload == payload and back.token == tok
    a2 = am.Message.decode(m.Message(t, c, mid, tok, payload).encode())
    assert a2.payload == payload and a2.mid == mid
