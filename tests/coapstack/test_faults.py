# Faults the message layer must survive (RFC 7252 §4): duplicates, strays, garbage,
# resets, silence, datagrams arriving back to back.
import pytest
from coapdrive import run_client
from peers.scripted_peer import ACK, CON, NON, RST, Garbage, Observe, Piggyback, Reset, Separate, Silent, Together, UnknownToken
from aiocoap.numbers.codes import Code


def rsts(peer, mid=None):
    return peer.empties(RST, mid)


def test_duplicate_piggybacked_response_delivered_once(peer_factory):
    p = peer_factory({"d": Piggyback(b"dup", dup=True), "ok": Piggyback(b"ok")})
    r = run_client(p.port, [{"path": "d"}, {"op": "sleep", "ms": 50}, {"path": "ok"}])
    assert bytes.fromhex(r[0]["payload"]) == b"dup", r.raw
    assert bytes.fromhex(r[2]["payload"]) == b"ok"
    assert rsts(p) == [], "an ACK is never answered"
    assert r.counters["received"] == 3


def test_duplicate_separate_con_response_acked_twice_delivered_once(peer_factory):
    sep = Separate(b"twice", delay=0.0, con=True, empty_ack=False, dup=True)
    p = peer_factory({"d": sep, "ok": Piggyback(b"ok")})
    r = run_client(p.port, [{"path": "d"}, {"op": "sleep", "ms": 50}, {"path": "ok"}])
    assert bytes.fromhex(r[0]["payload"]) == b"twice", r.raw
    resp = [d for d in p.sent if d.msg.code == Code.CONTENT and d.msg.payload == b"twice"]
    assert len(resp) == 2 and resp[0].mid == resp[1].mid
    assert len(p.empties(ACK, resp[0].mid)) == 2, "the duplicate is ACKed again (RFC 7252 §4.5)"
    assert rsts(p) == []
    assert r.counters["duplicates"] == 1
    assert bytes.fromhex(r[2]["payload"]) == b"ok"


def test_duplicate_notifications_delivered_once(peer_factory):
    obs = Observe(notify=[(0.05, b"n1"), (0.05, b"n2"), (0.05, b"n3")], first=b"n0", dup_notify=True)
    p = peer_factory({"obs": obs})
    r = run_client(p.port, [{"op": "observe", "path": "obs", "ms": 400}])
    got = [bytes.fromhex(n["payload"]) for n in r[0]["notifications"]]
    assert got == [b"n0", b"n1", b"n2", b"n3"], r.raw
    assert r[0]["count"] == 3
    for mid, _, _ in obs.notified:
        assert len(p.empties(ACK, mid)) == 2, "each copy of a CON notification is ACKed"
    assert r.counters["duplicates"] == 3
    assert obs.deregistered == 1 and r[0]["cancel"]["code"] == "2.05"


def test_back_to_back_responses_are_separate_datagrams(peer_factory):
    # Both answers are sent in one go, so both datagrams are queued on the client's socket
    # before it reads: each must be read (and matched) on its own.
    p = peer_factory({"e": Together(2, Piggyback(lambda ctx: b"echo:" + bytes(ctx.msg.payload)))})
    reqs = [{"path": "e", "method": "post", "payload": "r%d" % i, "id": "r%d" % i} for i in range(2)]
    r = run_client(p.port, [{"op": "concurrent", "requests": reqs}], {"nstart": 2, "ack_timeout_ms": 1000})
    for res in r[0]["results"]:
        assert bytes.fromhex(res["payload"]) == b"echo:" + res["id"].encode(), r.raw
    assert r.counters["retransmissions"] == 0 and r.counters["received"] == 2


@pytest.mark.parametrize("con", [True, False], ids=["CON", "NON"])
def test_unknown_token_is_rejected_with_rst(peer_factory, con):
    beh = UnknownToken(Piggyback(b"real"), con=con)
    p = peer_factory({"u": beh})
    r = run_client(p.port, [{"path": "u"}, {"op": "sleep", "ms": 50}])
    assert bytes.fromhex(r[0]["payload"]) == b"real"
    assert len(rsts(p, beh.mids[0])) == 1, "a response nobody waits for is answered with RST"
    assert r.counters["rejected"] == 1


def _tok(ctx):
    return bytes(ctx.msg.token)


GARBAGE = {
    # (no zero-length datagram: CPython 3.11's asyncio transport silently skips empty sends)
    "short": lambda ctx: b"\x40\x45\x12",
    "bad-version": lambda ctx: b"\x84\x45\x00\x01" + _tok(ctx),
    "version-0": lambda ctx: b"\x04\x45\x00\x02" + _tok(ctx),
    "tkl-9-con": lambda ctx: b"\x49\x45\x00\x03" + _tok(ctx) + b"\x00" * 5,
    "tkl-15-ack": lambda ctx: bytes([0x6F, 0x45, ctx.msg.mid >> 8, ctx.msg.mid & 255]) + b"\x00" * 15,
    "truncated-token": lambda ctx: b"\x48\x45\x00\x04\x01\x02",
    "truncated-opts-con": lambda ctx: b"\x44\x45\x00\x05" + _tok(ctx) + b"\xd1",  # ext byte missing
    "truncated-value-con": lambda ctx: b"\x44\x45\x00\x06" + _tok(ctx) + b"\xb5ab",
    "reserved-nibble-con": lambda ctx: b"\x44\x45\x00\x07" + _tok(ctx) + b"\xf1a",
    "marker-no-payload-con": lambda ctx: b"\x44\x45\x00\x08" + _tok(ctx) + b"\xff",
    "empty-with-token-con": lambda ctx: b"\x44\x00\x00\x09" + _tok(ctx),
    "truncated-opts-ack": lambda ctx: bytes([0x64, 0x45, ctx.msg.mid >> 8, ctx.msg.mid & 255]) + _tok(ctx) + b"\xe1\x00",
    "request-to-client": lambda ctx: b"\x40\x01\x00\x0a",
    "random": lambda ctx: bytes(range(256)) * 3,
    "big": lambda ctx: b"\x50\x45\x00\x0b" + b"\xff" + b"z" * 2000,
}
# CON datagrams with a header the client could read: it must reject those with RST.
RST_MIDS = {0x03: "tkl-9-con", 0x05: "truncated-opts-con", 0x06: "truncated-value-con", 0x07: "reserved-nibble-con",
            0x08: "marker-no-payload-con", 0x09: "empty-with-token-con", 0x0A: "request-to-client",
            0x04: "truncated-token"}  # a CON whose token runs past the end
# "big" (2005 bytes) is longer than the receive buffer: dropped whole without an answer,
# never parsed cut short (a cut datagram could pass for a shorter, valid message).


def test_garbage_never_kills_the_receive_loop(peer_factory):
    p = peer_factory({"g": Garbage(list(GARBAGE.values()), then=Piggyback(b"after garbage")), "ok": Piggyback(b"ok")})
    r = run_client(p.port, [{"path": "g"}, {"op": "sleep", "ms": 50}, {"path": "ok"}, {"op": "ping"}])
    assert bytes.fromhex(r[0]["payload"]) == b"after garbage", r.raw
    assert bytes.fromhex(r[2]["payload"]) == b"ok"
    assert r[3]["pong"] is True
    for mid, name in RST_MIDS.items():
        assert len(rsts(p, mid)) == 1, name
    assert len(rsts(p)) == len(RST_MIDS), "ACKs and unreadable headers are never answered"
    assert r.counters["rejected"] == len(GARBAGE)
    assert r.counters["oversized"] == 1
    assert r.tail["rx_error"] is None


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_each_malformed_datagram_then_next_request(peer_factory, name):
    # Each one alone, instead of the real answer: the request is retransmitted and the
    # retransmission is answered; nothing crashes.
    beh = Garbage([GARBAGE[name]], then=None, drop=0)
    p = peer_factory({"ok": Piggyback(b"ok")})
    p.handler.routes["g"] = beh
    r = run_client(p.port, [{"path": "g", "timeout_ms": 150}, {"path": "ok"}], {"ack_timeout_ms": 50})
    assert r[0]["error"] == "NoAck"
    assert bytes.fromhex(r[1]["payload"]) == b"ok", r.raw


def test_rst_answer_raises_reset(peer_factory):
    p = peer_factory({"r": Reset(), "ok": Piggyback(b"ok")})
    r = run_client(p.port, [{"path": "r"}, {"path": "ok"}])
    assert r[0]["error"] == "Reset", r.raw
    assert r[0]["ms"] < 90, "a reset ends the exchange at once"
    assert len(p.requests("r")) == 1
    assert bytes.fromhex(r[1]["payload"]) == b"ok"


def test_rst_after_empty_ack_is_ignored_for_the_response(peer_factory):
    # An RST for a message ID we already saw ACKed: the separate response still counts.
    p = peer_factory({"s": Separate(b"sep", delay=0.1, con=True, empty_ack=True)})
    r = run_client(p.port, [{"path": "s"}])
    assert bytes.fromhex(r[0]["payload"]) == b"sep"


def test_no_answer_raises_timeout(peer_factory):
    p = peer_factory({"q": Silent(), "ok": Piggyback(b"ok")})
    r = run_client(p.port, [{"path": "q"}, {"path": "ok"}, {"path": "q", "con": False, "timeout_ms": 200}],
                   {"ack_timeout_ms": 30, "ack_random_factor": 1.0, "max_retransmit": 2})
    assert r[0]["error"] == "NoAck"  # a Timeout: no ACK at all (coap.errors.NoAck)
    assert 180 <= r[0]["ms"] <= 300, r[0]  # 30 + 60 + 120 ms
    assert bytes.fromhex(r[1]["payload"]) == b"ok"
    assert r[2]["error"] == "Timeout" and 180 <= r[2]["ms"] <= 300  # NON: no ACK expected, so "no response"
    assert len([d for d in p.requests("q") if d.mtype == NON]) == 1, "NON is never retransmitted"


def test_ping(peer_factory):
    p = peer_factory({})
    r = run_client(p.port, [{"op": "ping"}])
    assert r[0]["pong"] is True and r.tail["heard"] is True  # the RST moved last_rx
    pings = [d for d in p.received if d.is_empty(CON)]
    assert len(pings) == 1 and pings[0].data == bytes([0x40, 0, pings[0].mid >> 8, pings[0].mid & 255])


def test_drop_first_copies_then_answer(peer_factory):
    p = peer_factory({"l": Piggyback(b"lossy", drop=3)})
    r = run_client(p.port, [{"path": "l"}], {"ack_timeout_ms": 30})
    assert bytes.fromhex(r[0]["payload"]) == b"lossy"
    assert len(p.requests("l")) == 4 and r.counters["retransmissions"] == 3



def test_ack_with_wrong_token_is_not_the_response(peer_factory):
    # A piggybacked ACK for our MID but with another token (RFC 7252 §5.3.2: match by
    # token too) is dropped without RST; the retransmission gets the real answer.
    from peers.scripted_peer import Behaviour, build

    class WrongTokenFirst(Behaviour):
        def __call__(self, ctx):
            if ctx.peer.copies_seen < 1:
                ctx.peer.copies_seen += 1
                ctx.peer.send(build(ACK, Code.CONTENT, ctx.msg.mid, b"\x00\x01", b"wrong"), ctx.addr, "wrong token")
            else:
                ctx.send(ctx.response(Code.CONTENT, b"right"))

    p = peer_factory({"w": WrongTokenFirst()}, dedup=False)
    p.copies_seen = 0
    r = run_client(p.port, [{"path": "w"}], {"ack_timeout_ms": 50})
    assert bytes.fromhex(r[0]["payload"]) == b"right", r.raw
    assert len(p.requests("w")) == 2 and rsts(p) == []
    assert r.counters["rejected"] == 1


def test_stray_acks_are_ignored(peer_factory):
    # An empty ACK and a piggybacked response for message IDs nobody sent: no RST (an ACK
    # is never answered), nothing delivered, the real answer follows.
    from peers.scripted_peer import build

    stray = [lambda ctx: build(ACK, Code.EMPTY, (ctx.msg.mid + 100) & 0xFFFF).encode(),
             lambda ctx: build(ACK, Code.CONTENT, (ctx.msg.mid + 101) & 0xFFFF, bytes(ctx.msg.token), b"no").encode()]
    p = peer_factory({"s": Garbage(stray, then=Piggyback(b"yes"))})
    r = run_client(p.port, [{"path": "s"}])
    assert bytes.fromhex(r[0]["payload"]) == b"yes"
    assert rsts(p) == [] and r.counters["rejected"] == 1  # the empty ACK is simply unmatched


def test_ping_unanswered_is_false(peer_factory):
    p = peer_factory(lambda peer, dg: None)  # swallows everything, pings included
    r = run_client(p.port, [{"op": "ping", "timeout_ms": 300}], {"ack_timeout_ms": 50})
    assert r[0]["pong"] is False and 250 <= r[0]["ms"] <= 450
    # Nothing was received, so last_rx never moved: connect() does not write it (only the
    # receive path does, issue 14 item 1), nor does an unanswered ping.
    assert r.tail["heard"] is False, r.raw


def test_a_request_waiting_across_a_reopen_still_ends(peer_factory):
    # The supervisor drops the link and opens it again (a failed keep-alive probe) while a
    # request waits for its answer. Its retransmissions and deadline must go on: with NSTART 1
    # it holds the only send slot, so a request that waited forever would starve every later
    # one, the next probe too, and the link would be re-opened for ever without a word sent.
    p = peer_factory({"s": Silent(), "ok": Piggyback(b"ok")})
    r = run_client(p.port, [{"op": "reopen", "request": {"path": "s"}, "after_ms": 150}, {"path": "ok"}])
    assert r[0]["error"] in ("NoAck", "Timeout"), r.raw
    assert bytes.fromhex(r[1]["payload"]) == b"ok", r.raw
