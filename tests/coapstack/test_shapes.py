# The three response shapes a ThingsBoard server produces (docs/wire.md §3),
# plus the NON variants, against lib/coap on the unix port.
import pytest
from coapdrive import run_client
from peers.scripted_peer import ACK, CON, NON, Piggyback, Separate

EPS = 0.05  # scheduling slack on loopback, seconds


def req_copies(peer, path):
    return peer.requests(path)


def test_piggybacked_response(peer_factory):
    p = peer_factory({"a": Piggyback(b"piggy")})
    r = run_client(p.port, [{"path": "a"}])
    assert r[0]["code"] == "2.05" and r[0]["type"] == "ACK"
    assert bytes.fromhex(r[0]["payload"]) == b"piggy"
    reqs = req_copies(p, "a")
    assert len(reqs) == 1 and reqs[0].mtype == CON
    assert r[0]["mid"] == reqs[0].mid and r[0]["token"] == reqs[0].token.hex()
    assert r.counters["retransmissions"] == 0


@pytest.mark.parametrize("con", [True, False], ids=["CON", "NON"])
def test_empty_ack_then_separate_response(peer_factory, con):
    # Shape (b): empty ACK at once, the response later as a separate CON or NON message.
    # The delay is longer than the whole retransmission schedule would allow without the
    # ACK (100 ms ACK timeout, so copies would go out at ~0.1, 0.3, 0.7 s).
    sep = Separate(b"later", delay=0.6, con=con, empty_ack=True)
    p = peer_factory({"s": sep})
    r = run_client(p.port, [{"path": "s"}, {"op": "sleep", "ms": 100}])
    assert r[0]["code"] == "2.05" and bytes.fromhex(r[0]["payload"]) == b"later"
    assert r[0]["type"] == ("CON" if con else "NON")
    assert r[0]["ms"] >= 550
    assert len(req_copies(p, "s")) == 1, "the empty ACK must stop retransmission"
    assert r.counters["retransmissions"] == 0
    resp = [d for d in p.sent if d.msg.code.is_response()][0]
    acks = p.empties(ACK, resp.mid)
    if con:
        assert len(acks) == 1, "a separate CON response is ACKed with its own MID"
        assert acks[0].t - resp.t < EPS
    else:
        assert acks == [] and p.empties(ACK) == []


def test_separate_con_response_without_ack_thingsboard_shape(peer_factory):
    # Shape (c), what ThingsBoard does (spec §3): no empty ACK; a CON response with a new
    # MID and the request's token, here after 0.25 s so the client has retransmitted
    # (copies at ~0 and ~0.1-0.15 s); it must stop once the response is in.
    sep = Separate(b"tb", delay=0.25, con=True, empty_ack=False)
    p = peer_factory({"tb": sep})
    r = run_client(p.port, [{"path": "tb"}, {"op": "sleep", "ms": 800}])
    assert r[0]["code"] == "2.05" and r[0]["type"] == "CON" and bytes.fromhex(r[0]["payload"]) == b"tb"
    reqs = req_copies(p, "tb")
    assert r[0]["token"] == reqs[0].token.hex()
    assert r[0]["mid"] != reqs[0].mid, "the response has its own MID"
    assert len({d.mid for d in reqs}) == 1, "retransmissions reuse the request's MID"
    resp = [d for d in p.sent if d.msg.code.is_response()][0]
    assert 1 <= r.counters["retransmissions"] <= 2
    assert all(d.t <= resp.t + EPS for d in reqs), "retransmitted after the response arrived"
    acks = p.empties(ACK, resp.mid)
    assert len(acks) == 1 and acks[0].t - resp.t < EPS
    assert p.empties(ACK, reqs[0].mid) == []


def test_thingsboard_shape_after_lost_response_is_resent(peer_factory):
    # The peer loses the first copy of the request; the retransmission is answered TB-style.
    sep = Separate(b"again", delay=0.0, con=True, empty_ack=False, drop=1)
    p = peer_factory({"tb": sep})
    r = run_client(p.port, [{"path": "tb"}])
    assert bytes.fromhex(r[0]["payload"]) == b"again"
    assert len(req_copies(p, "tb")) == 2 and r.counters["retransmissions"] == 1


def test_non_request_gets_non_response(peer_factory):
    p = peer_factory({"n": Piggyback(b"non"), "ns": Separate(b"nonsep", delay=0.1, con=False)})
    r = run_client(p.port, [{"path": "n", "con": False}, {"path": "ns", "con": False}])
    for i, body in ((0, b"non"), (1, b"nonsep")):
        assert r[i]["type"] == "NON" and bytes.fromhex(r[i]["payload"]) == body
    assert all(d.mtype == NON for d in p.requests())
    assert p.empties(ACK) == []
    assert r.counters["sent"] == 2


def test_separate_con_response_retransmitted_until_acked(peer_factory):
    # The peer pretends the client's first ACK was lost and retransmits its CON response
    # (same MID): the client must ACK the duplicate again but deliver the response once.
    sep = Separate(b"rel", delay=0.0, con=True, empty_ack=False, reliable=True, rto=0.15, ignore_acks=1)
    p = peer_factory({"r": sep})
    r = run_client(p.port, [{"path": "r"}, {"op": "sleep", "ms": 400}, {"path": "r"}])
    assert bytes.fromhex(r[0]["payload"]) == b"rel"
    ex = sep.exchanges[0]
    assert ex.done and ex.reply == ACK and ex.sends == 2
    resp = [d for d in p.sent if d.msg.code.is_response()]
    mid = resp[0].mid
    assert [d.mid for d in resp[:2]] == [mid, mid]
    assert len(p.empties(ACK, mid)) == 2, "the duplicate is ACKed again"
    assert r.counters["duplicates"] == 1
    assert r.counters["rejected"] == 0  # not treated as an unknown response (no RST)
    assert p.empties(CON) == [] and [d for d in p.received if d.msg and d.msg.mtype.name == "RST"] == []
    assert bytes.fromhex(r[2]["payload"]) == b"rel"  # and the next request is fine
