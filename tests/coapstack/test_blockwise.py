# Block-wise transfers (RFC 7959) against the scripted peer: Block2 downloads (server's
# size, smaller sizes by early negotiation), Block1 uploads with 2.31 Continue.
import random

import pytest
from coapdrive import run_client
from peers.scripted_peer import Block1, Block2
from aiocoap.numbers.codes import Code

BLOCK1, BLOCK2, SIZE1 = 27, 23, 60


def body(n, seed=1):
    return random.Random(seed).randbytes(n)


def block_requests(peer, path="b"):
    out = []
    for d in peer.requests(path):
        b2 = d.msg.opt.block2
        out.append((None if b2 is None else (b2.block_number, b2.size_exponent), d.token))
    return out


@pytest.mark.parametrize("size,max_szx", [(5000, 6), (1024, 6), (700, 4), (300, 0)])
def test_block2_download_server_size(peer_factory, size, max_szx):
    data = body(size)
    p = peer_factory({"b": Block2(data, max_szx=max_szx, etag=b"v1")})
    r = run_client(p.port, [{"path": "b"}])
    assert r[0]["code"] == "2.05", r.raw
    assert bytes.fromhex(r[0]["payload"]) == data
    reqs = block_requests(p)
    bs = 16 << max_szx
    nblocks = max(1, -(-size // bs))
    assert [x[0] for x in reqs] == [None] + [(i, max_szx) for i in range(1, nblocks)]
    toks = [x[1] for x in reqs]
    # Made one at a time, they may all carry the empty token (RFC 7252 §5.3.1); else each its own.
    assert all(t == b"" for t in toks) or len(set(toks)) == len(toks), toks


@pytest.mark.parametrize("szx", [0, 2, 5])
def test_block2_early_negotiation(peer_factory, szx):
    data = body(1500, seed=szx)
    p = peer_factory({"b": Block2(data, max_szx=6)})
    r = run_client(p.port, [{"path": "b", "options": [[BLOCK2, szx]]}])
    assert bytes.fromhex(r[0]["payload"]) == data, r.raw
    reqs = block_requests(p)
    n = -(-1500 // (16 << szx))
    assert [x[0] for x in reqs] == [(i, szx) for i in range(n)]


def test_block2_with_lost_block_requests(peer_factory):
    data = body(3000, seed=5)
    p = peer_factory({"b": Block2(data, max_szx=6, drop=1)})
    r = run_client(p.port, [{"path": "b"}], {"ack_timeout_ms": 30})
    assert bytes.fromhex(r[0]["payload"]) == data
    assert r.counters["retransmissions"] == 3


def test_block2_etag_change_is_refused(peer_factory):
    n = [0]

    def etag(ctx):
        n[0] += 1
        return b"e%d" % n[0]

    p = peer_factory({"b": Block2(body(3000), etag=etag)})
    r = run_client(p.port, [{"path": "b"}])
    assert r[0]["error"] == "BadResponse", r.raw


@pytest.mark.parametrize("block_size,max_szx", [(1024, 6), (1024, 4), (64, 6)])
def test_block1_upload_3000_bytes(peer_factory, block_size, max_szx):
    data = body(3000, seed=block_size + max_szx)
    up = Block1(max_szx=max_szx, final_payload=b"stored")
    p = peer_factory({"u": up})
    r = run_client(p.port, [{"path": "u", "method": "put", "payload_hex": data.hex()}], {"block_size": block_size})
    assert r[0]["code"] == "2.04", r.raw
    assert bytes.fromhex(r[0]["payload"]) == b"stored"
    assert up.bodies == [data]
    assert up.size1 == [3000], "Size1 announces the total on the first block (RFC 7959 §4)"
    b1 = [(d.msg.opt.block1.block_number, d.msg.opt.block1.more, d.msg.opt.block1.size_exponent, len(d.msg.payload))
          for d in p.requests("u")]
    szx = {1024: 6, 64: 2}[block_size]
    first = 16 << szx
    assert b1[0] == (0, True, szx, first)
    later = 16 << min(szx, max_szx)
    assert sum(x[3] for x in b1) == 3000
    assert all(x[3] == later for x in b1[1:-1]) and not b1[-1][1]
    assert len(b1) == 1 + -(-(3000 - first) // later)


def test_block1_refused_midway_returns_the_refusal(peer_factory):
    class Refuse(Block1):
        def __call__(self, ctx):
            if ctx.msg.opt.block1.block_number >= 1:
                ctx.send(ctx.response(Code.REQUEST_ENTITY_TOO_LARGE, b"too big"))
            else:
                super().__call__(ctx)

    p = peer_factory({"u": Refuse()})
    r = run_client(p.port, [{"path": "u", "method": "post", "payload_hex": body(3000).hex()}])
    assert r[0]["code"] == "4.13" and bytes.fromhex(r[0]["payload"]) == b"too big"
    assert len(p.requests("u")) == 2


def test_small_body_goes_in_one_message(peer_factory):
    up = Block1()
    p = peer_factory({"u": up})
    r = run_client(p.port, [{"path": "u", "method": "post", "payload_hex": body(1024).hex()}])
    assert r[0]["code"] == "2.04" and up.bodies == [body(1024)]
    assert p.requests("u")[0].msg.opt.block1 is None
