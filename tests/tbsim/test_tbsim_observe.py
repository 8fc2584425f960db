"""Observe (spec §6.2-§6.4) and server-side RPC (spec §7) on the wire."""

import json
import threading

import pytest
from aiocoap.numbers import Code

from tbsim_wire import ACK, CON, NON, RST, RawPeer

TOKEN = "A1_TEST_TOKEN"
ATTR = "api/v1/%s/attributes" % TOKEN
RPC = "api/v1/%s/rpc" % TOKEN


@pytest.fixture
def peer(tbsim):
    p = RawPeer(tbsim.coap_port)
    yield p
    p.close()


def shared_url(sim):
    return "/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % sim.rest.device_id("Thermo-1")


def notification(peer, token, timeout=3.0, ack=True):
    r = peer.recv(timeout)
    assert r is not None, "no notification"
    assert r.token == token, r
    if ack and r.mtype == CON:
        peer.ack(r)
    return r


def test_attribute_subscription_first_response_and_notifications(tbsim, peer):
    req = peer.request(Code.GET, ATTR, observe=0, token=b"at")
    r = peer.recv()
    # first response: type unset -> piggybacked in the ACK, Observe=0, all shared attributes ({} when none)
    assert (r.mtype, r.code, r.mid, r.opt.observe, r.payload) == (ACK, Code.CONTENT, req.mid, 0, b"{}")
    assert r.opt.content_format == 50
    url = shared_url(tbsim)
    tbsim.rest.post(url, {"sharedStr": "value1", "sharedLong": 73})
    n1 = notification(peer, b"at")
    assert n1.mtype == CON and n1.code == Code.CONTENT and n1.opt.observe == 1 and 0 <= n1.mid <= 64999
    assert json.loads(n1.payload) == {"sharedStr": "value1", "sharedLong": 73}
    tbsim.rest.delete(url.replace("/attributes/SHARED_SCOPE", "/SHARED_SCOPE"), keys="sharedStr")
    n2 = notification(peer, b"at")
    assert n2.opt.observe == 2 and n2.payload == b'{"deleted":["sharedStr"]}'
    # server-scope changes are not pushed
    tbsim.rest.post(url.replace("SHARED_SCOPE", "SERVER_SCOPE"), {"srv": 1})
    assert peer.recv(0.4) is None
    # a new subscription with the same token starts again at Observe 0 with the current state
    req = peer.request(Code.GET, ATTR, observe=0, token=b"at")
    r = peer.recv()
    assert r.opt.observe == 0 and r.payload == b'{"sharedLong":73}'


def test_non_subscription_gets_non_notifications(tbsim, peer):
    req = peer.request(Code.GET, ATTR + "/updates", observe=0, token=b"nn", mtype=NON)
    r = peer.recv()
    assert r.mtype == NON and r.opt.observe == 0 and r.mid != req.mid
    tbsim.rest.post(shared_url(tbsim), {"a": 1.5})
    n = notification(peer, b"nn")
    assert n.mtype == NON and n.opt.observe == 1 and n.payload == b'{"a":1.5}'


def test_new_token_replaces_old_subscription_with_2_02(tbsim, peer):
    peer.request(Code.GET, ATTR, observe=0, token=b"old")
    assert peer.recv().opt.observe == 0
    peer.request(Code.GET, ATTR, observe=0, token=b"new")
    got = peer.recv_n(2)
    deleted = [g for g in got if g.token == b"old"]
    fresh = [g for g in got if g.token == b"new"]
    assert len(deleted) == 1 and deleted[0].code == Code.DELETED and deleted[0].mtype == CON
    peer.ack(deleted[0])
    assert len(fresh) == 1 and fresh[0].opt.observe == 0
    tbsim.rest.post(shared_url(tbsim), {"x": 1})
    n = notification(peer, b"new")
    assert n.opt.observe == 1
    assert peer.recv(0.3) is None  # nothing on the old token


def test_observe_1_deregisters_with_no_response(tbsim, peer):
    peer.request(Code.GET, ATTR, observe=0, token=b"tk")
    assert peer.recv().opt.observe == 0
    req = peer.request(Code.GET, ATTR, observe=1, token=b"tk")
    got = peer.recv_n(1, extra=0.3)
    assert [(g.mtype, g.code, g.mid) for g in got] == [(ACK, Code.EMPTY, req.mid)]
    # ThingsBoard's empty ACK comes about 500 ms later: never sooner; the upper bound is far from
    # 0.5 s so that a loaded machine's late timer does not fail it
    assert 0.4 < got[0].at - req.sent_at < 2.0
    tbsim.rest.post(shared_url(tbsim), {"x": 2})
    assert peer.recv(0.4) is None


def test_rst_cancels_the_relation(tbsim, peer):
    peer.request(Code.GET, ATTR, observe=0, token=b"rs")
    peer.recv()
    url = shared_url(tbsim)
    tbsim.rest.post(url, {"x": 1})
    n = notification(peer, b"rs", ack=False)
    peer.rst(n)
    assert tbsim.wait_for_log("RST to a notification") is not None
    tbsim.rest.post(url, {"x": 2})
    assert peer.recv(0.4) is None


def test_one_con_notification_in_flight_newer_waiting_replaces_older(tbsim, peer):
    peer.request(Code.GET, ATTR, observe=0, token=b"fc")
    peer.recv()
    url = shared_url(tbsim)
    tbsim.rest.post(url, {"v": 1})
    first = notification(peer, b"fc", ack=False)
    tbsim.rest.post(url, {"v": 2})
    tbsim.rest.post(url, {"v": 3})
    assert peer.recv(0.3) is None  # held back while the first is unacknowledged
    peer.ack(first)
    n = notification(peer, b"fc")
    assert n.payload == b'{"v":3}' and n.opt.observe == 3  # {"v":2} (Observe 2) was replaced
    assert peer.recv(0.3) is None


def test_unacked_con_notification_cancels_every_relation_of_the_peer(tbsim_factory):
    sim = tbsim_factory("--ack-timeout", "0.05", "--max-retransmit", "2")
    p = RawPeer(sim.coap_port)
    try:
        p.request(Code.GET, ATTR, observe=0, token=b"a1")
        p.recv()
        p.request(Code.GET, RPC, observe=0, token=b"r1")
        r = p.recv()
        p.ack(r)
        sim.rest.post(shared_url(sim), {"x": 1})
        got = p.recv_n(3, extra=0.3)  # original + 2 retransmissions, never ACKed
        assert len(got) == 3 and len({g.mid for g in got}) == 1
        assert sim.wait_for_log("never acknowledged", timeout=2) is not None
        assert sim.wait_for_log("observe rpc Thermo-1 token 7231 cancelled", timeout=2) is not None
        sim.rest.post(shared_url(sim), {"x": 2})
        assert p.recv(0.3) is None
    finally:
        p.close()


def rest_rpc(sim, kind, body, out):
    did = sim.rest.device_id("Thermo-1")
    out.append(sim.rest.request("POST", "/api/plugins/rpc/%s/%s" % (kind, did), body, timeout=30))


def test_rpc_subscription_two_way_round_trip(tbsim, peer):
    req = peer.request(Code.GET, RPC, observe=0, token=b"rp")
    r = peer.recv()
    # 2.03 Valid, Observe=0, empty payload, separate CON with a new MID, no Content-Format
    assert (r.mtype, r.code, r.opt.observe, r.payload) == (CON, Code.VALID, 0, b"")
    assert r.mid != req.mid and r.opt.content_format is None
    peer.ack(r)
    out = []
    t = threading.Thread(target=rest_rpc, args=(tbsim, "twoway", {"method": "setGpio",
                                                                  "params": {"pin": 23, "value": 1}}, out))
    t.start()
    n = notification(peer, b"rp")
    assert n.opt.observe == 1 and n.code == Code.CONTENT and n.opt.content_format == 50
    body = json.loads(n.payload)
    assert body == {"id": 1, "method": "setGpio", "params": {"pin": 23, "value": 1}}
    r = peer.exchange(Code.POST, RPC + "/1", '{"result":"ok"}')
    assert r.code == Code.CREATED and r.mtype == CON
    t.join(10)
    assert out == [(200, {"result": "ok"})]
    # a reply to an unknown id still gets 2.01
    assert peer.exchange(Code.POST, RPC + "/999", '{"late":true}').code == Code.CREATED


def test_one_way_rpc_to_offline_device_is_504(tbsim_factory):
    sim = tbsim_factory("--rpc-min-timeout-ms", "300")
    out = []
    rest_rpc(sim, "oneway", {"method": "reboot", "params": {}, "timeout": 300}, out)
    assert out[0][0] == 504


def test_pending_rpc_is_resent_with_the_same_id_on_resubscribe(tbsim_factory):
    sim = tbsim_factory("--rpc-ack-timeout", "0.3", "--rpc-min-timeout-ms", "100")
    p = RawPeer(sim.coap_port)
    try:
        did = sim.rest.device_id("Thermo-1")
        queued = sim.rest.post("/api/plugins/rpc/twoway/" + did,
                               {"method": "getStatus", "params": {}, "persistent": True, "timeout": 60000})
        p.request(Code.GET, RPC, observe=0, token=b"s1")
        first = p.recv()
        assert first.code == Code.VALID
        p.ack(first)
        n = p.recv()
        assert n.token == b"s1" and json.loads(n.payload)["id"] == 1  # pushed after the 2.03
        # not ACKed: after the RPC ACK timeout it is TIMEOUT and stays pending
        assert sim.wait_for_log("delivery TIMEOUT", timeout=3) is not None
        rec = sim.rest.get("/api/rpc/persistent/" + queued["rpcId"])
        assert rec["status"] == "TIMEOUT"
        p.request(Code.GET, RPC, observe=0, token=b"s2")
        got = p.recv_until(lambda got: any(g.token == b"s2" and g.code == Code.CONTENT for g in got)
                           and any(g.token == b"s1" and g.code == Code.DELETED for g in got))
        for g in got:
            if g.mtype == CON:
                p.ack(g)
        again = [g for g in got if g.token == b"s2" and g.code == Code.CONTENT]
        assert len(again) == 1 and json.loads(again[0].payload)["id"] == 1
        assert any(g.token == b"s1" and g.code == Code.DELETED for g in got)
        assert p.exchange(Code.POST, RPC + "/1", '{"up":1}').code == Code.CREATED
        rec = sim.rest.get("/api/rpc/persistent/" + queued["rpcId"])
        assert rec["status"] == "SUCCESSFUL" and rec["response"] == {"up": 1}
    finally:
        p.close()


def test_same_token_for_rpc_cancels_attribute_subscription(tbsim, peer):
    peer.request(Code.GET, ATTR, observe=0, token=b"same")
    peer.recv()
    peer.request(Code.GET, RPC, observe=0, token=b"same")
    r = peer.recv()
    assert r.code == Code.VALID
    peer.ack(r)
    tbsim.rest.post(shared_url(tbsim), {"x": 1})
    assert peer.recv(0.4) is None
