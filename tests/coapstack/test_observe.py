# RFC 7641 client side against the scripted peer: ordering, NON notifications, the end of
# an observation, and deregistration.
from coapdrive import run_client
from peers.scripted_peer import ACK, RST, Observe
from aiocoap.numbers.codes import Code


def payloads(step):
    return [bytes.fromhex(n["payload"]) for n in step["notifications"]]


def test_con_notifications_acked_and_stale_ones_dropped(peer_factory):
    # Observe 7 arrives after 8: older, so not delivered (§3.4), but still ACKed.
    obs = Observe(notify=[(0.03, b"a", 6), (0.03, b"c", 8), (0.03, b"b", 7), (0.03, b"d", 9)], first=b"first", seq0=5)
    p = peer_factory({"o": obs})
    r = run_client(p.port, [{"op": "observe", "path": "o", "ms": 300}])
    assert payloads(r[0]) == [b"first", b"a", b"c", b"d"], r.raw
    for mid, _, _ in obs.notified:
        assert len(p.empties(ACK, mid)) == 1
    assert p.empties(RST) == []


def test_observe_sequence_wraps_around(peer_factory):
    top = (1 << 24) - 2
    obs = Observe(notify=[(0.03, b"x", top + 1), (0.03, b"y", 0), (0.03, b"z", 1)], seq0=top)
    p = peer_factory({"o": obs})
    r = run_client(p.port, [{"op": "observe", "path": "o", "ms": 250}])
    assert payloads(r[0])[1:] == [b"x", b"y", b"z"], r.raw


def test_non_notifications(peer_factory):
    obs = Observe(notify=[(0.03, b"n1"), (0.03, b"n2")], con=False)
    p = peer_factory({"o": obs})
    r = run_client(p.port, [{"op": "observe", "path": "o", "ms": 200}])
    assert payloads(r[0])[1:] == [b"n1", b"n2"]
    assert p.empties(ACK) == [] and p.empties(RST) == []


def test_error_notification_ends_the_observation(peer_factory):
    obs = Observe(notify=[(0.03, b"ok", 6), (0.03, b"gone", None, Code.NOT_FOUND), (0.05, b"late", 8)])
    p = peer_factory({"o": obs})
    r = run_client(p.port, [{"op": "observe", "path": "o", "ms": 300}])
    assert r[0]["active"] is True and r[0]["active_after"] is False
    assert payloads(r[0])[1:] == [b"ok", b"gone"], r.raw
    late = [mid for mid, seq, _ in obs.notified if seq == 8][0]
    assert len(p.empties(RST, late)) == 1, "a notification after the end is rejected (§3.6)"
    assert obs.deregistered == 0


def test_registration_declined(peer_factory):
    from peers.scripted_peer import Piggyback

    p = peer_factory({"o": Piggyback(b"plain")})
    r = run_client(p.port, [{"op": "observe", "path": "o", "ms": 50}])
    assert r[0]["active"] is False and payloads(r[0]) == [b"plain"]
