# Retransmission timing (RFC 7252 §4.2) and NSTART (§4.7), measured on the peer side.
from coapdrive import run_client
from peers.scripted_peer import Piggyback, Silent

TOL = 0.02  # seconds of scheduling slack per measured interval (loopback, 2 cores)


def gaps(ts):
    return [b - a for a, b in zip(ts, ts[1:])]


def test_con_retransmission_schedule_and_timeout(peer_factory):
    T = 0.06
    p = peer_factory({"q": Silent()})
    r = run_client(p.port, [{"path": "q"}], {"ack_timeout_ms": 60, "ack_random_factor": 1.5, "max_retransmit": 4,
                                              "timeout_ms": 10000})
    assert r[0]["error"] == "NoAck", r.raw
    copies = p.requests("q")
    assert len(copies) == 1 + 4, "MAX_RETRANSMIT retransmissions, then give up"
    assert len({(d.mid, d.token) for d in copies}) == 1, "every copy has the same MID and token"
    assert len({d.data for d in copies}) == 1
    g = gaps([d.t for d in copies])
    # The initial timeout, estimated over the whole schedule (0, 1, 3, 7, 15 times it) so
    # that one late arrival at the peer hardly moves it, is random in
    # [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR] ...
    init = (copies[-1].t - copies[0].t) / 15
    assert T - TOL <= init <= 1.5 * T + TOL, g
    # ... and doubles after each retransmission.
    for k, gap in enumerate(g):
        want = init * 2**k
        assert abs(gap - want) <= max(2 * TOL, 0.2 * want), (k, g)
    # After the last retransmission the client waits one more (doubled) timeout: the
    # whole exchange lasts initial * (2 ** (MAX_RETRANSMIT + 1) - 1).
    want = 31 * init
    assert abs(r[0]["ms"] / 1000 - want) <= max(0.1, 0.05 * want), (r[0]["ms"], g)
    assert r.counters["retransmissions"] == 4 and r.counters["sent"] == 5


def test_retransmission_without_randomisation(peer_factory):
    p = peer_factory({"q": Silent()})
    r = run_client(p.port, [{"path": "q"}], {"ack_timeout_ms": 80, "ack_random_factor": 1.0, "max_retransmit": 2})
    assert r[0]["error"] == "NoAck"
    g = gaps([d.t for d in p.requests("q")])
    assert len(g) == 2
    assert abs(g[0] - 0.08) <= TOL + 0.01 and abs(g[1] - 0.16) <= TOL + 0.02, g
    assert abs(r[0]["ms"] - 7 * 80) <= 60, r[0]


def test_overall_timeout_caps_the_retransmission_schedule(peer_factory):
    p = peer_factory({"q": Silent()})
    r = run_client(p.port, [{"path": "q", "timeout_ms": 250}], {"ack_timeout_ms": 100, "ack_random_factor": 1.0})
    assert r[0]["error"] == "NoAck"
    assert 230 <= r[0]["ms"] <= 350, r[0]
    assert len(p.requests("q")) == 2  # at 0 and 100 ms; the next one (300 ms) is past the deadline


def _echo(ctx):
    return b"echo:" + bytes(ctx.msg.payload)


def _by_payload(peer):
    """First copy of each request by its payload."""
    out = {}
    for d in peer.requests("e"):
        out.setdefault(bytes(d.msg.payload), d)
    return out


def _check_matched(r, peer):
    reqs = _by_payload(peer)
    for res in r[0]["results"]:
        body = bytes.fromhex(res["payload"])
        assert body == b"echo:" + res["id"].encode(), res
        assert res["token"] == reqs[res["id"].encode()].token.hex(), "response matched to its own token"


def _responses(peer):
    return {bytes(d.msg.payload)[5:]: d for d in peer.sent if d.msg is not None and d.msg.code.is_response()}


def test_nstart_1_serialises_concurrent_requests(peer_factory):
    p = peer_factory({"e": Piggyback(_echo, delay=0.1)})
    reqs = [{"path": "e", "method": "post", "payload": "r%d" % i, "id": "r%d" % i} for i in range(3)]
    r = run_client(p.port, [{"op": "concurrent", "requests": reqs}], {"nstart": 1, "ack_timeout_ms": 1000})
    _check_matched(r, p)
    first = _by_payload(p)
    resp = _responses(p)
    order = sorted(first, key=lambda k: first[k].t)
    for a, b in zip(order, order[1:]):
        assert first[b].t >= resp[a].t, "NSTART=1: the next request waits for the previous response"
    assert len(p.requests("e")) == 3


def test_nstart_2_interleaves_and_matches_tokens(peer_factory):
    # r0 is answered after 0.3 s, the others after 0.1 s: with NSTART=2, r0 and r1 go out
    # together, r2 takes r1's slot when r1 completes, and all three complete before r0's
    # answer would have let a serialised client continue.
    p = peer_factory({"e": Piggyback(_echo, delay=lambda ctx: 0.3 if ctx.msg.payload == b"r0" else 0.1)})
    reqs = [{"path": "e", "method": "post", "payload": "r%d" % i, "id": "r%d" % i} for i in range(3)]
    r = run_client(p.port, [{"op": "concurrent", "requests": reqs}], {"nstart": 2, "ack_timeout_ms": 1000})
    _check_matched(r, p)
    first = _by_payload(p)
    resp = _responses(p)
    assert abs(first[b"r0"].t - first[b"r1"].t) < TOL, "two requests outstanding at once"
    assert first[b"r1"].t < resp[b"r0"].t and first[b"r0"].t < resp[b"r1"].t
    assert resp[b"r1"].t - TOL <= first[b"r2"].t < resp[b"r0"].t, "r2 takes the first free slot"
    res = {x["id"]: x for x in r[0]["results"]}
    assert res["r1"]["ms"] < res["r0"]["ms"] and res["r2"]["ms"] < res["r0"]["ms"]
    assert len({d.token for d in first.values()}) == 3


def test_empty_token_one_at_a_time_then_random_after_an_abandoned_request(peer_factory):
    # RFC 7252 §5.3.1: the empty token suits requests made one at a time. One abandoned
    # (no answer) could still be answered late, so until EXCHANGE_LIFETIME has passed the
    # next requests carry random tokens and a late answer cannot be taken for theirs.
    p = peer_factory({"a": Piggyback(), "q": Silent()})
    r = run_client(p.port, [{"path": "a"}, {"path": "a"}, {"path": "q", "timeout_ms": 250}, {"path": "a"}, {"path": "a"}])
    assert [x.get("code") for x in r] == ["2.05", "2.05", None, "2.05", "2.05"], r.raw
    assert r[2]["error"] == "NoAck"
    toks = [d.token for d in p.requests("a")]
    assert toks[:2] == [b"", b""] and all(d.token == b"" for d in p.requests("q"))
    assert len(toks[2]) == 4 and len(toks[3]) == 4 and toks[2] != toks[3]


def test_tokens_of_four_random_bytes_when_asked(peer_factory):
    p = peer_factory({"a": Piggyback()})
    r = run_client(p.port, [{"path": "a"}, {"path": "a"}], {"empty_token": False})
    assert [x["code"] for x in r] == ["2.05", "2.05"], r.raw
    toks = [d.token for d in p.requests("a")]
    assert all(len(t) == 4 for t in toks) and toks[0] != toks[1]
