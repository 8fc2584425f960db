"""Power-saving modes (spec §13): PSM/eDRX downlink windows after uplinks, queued and merged attribute updates,
RPCs held until the device wakes; settings from the CLI and from ThingsBoard's REST shapes."""

import json
import re
import threading
import time

from aiocoap.numbers import Code

from tbsim_wire import CON, NON, RawPeer

TOKEN = "A1_TEST_TOKEN"


def shared_url(sim, name="Thermo-1"):
    return "/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % sim.rest.device_id(name)


def subscribe(peer, token, path, tag, mtype=CON):
    peer.request(Code.GET, "api/v1/%s/%s" % (token, path), observe=0, token=tag, mtype=mtype)
    r = peer.recv()
    assert r is not None and r.token == tag and r.opt.observe == 0, r
    if r.mtype == CON:
        peer.ack(r)
    return r


def received(peer, duration):
    """Everything arriving within `duration` seconds (for "nothing comes": a short look is enough)."""
    got = peer.recv_all(duration)
    for g in got:
        if g.mtype == CON:
            peer.ack(g)
    return got


def received_n(peer, n, extra=0.2, timeout=10.0):
    """The next n messages (however slowly a loaded machine sends them), then whatever else comes
    within `extra` seconds."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        r = peer.recv(deadline - time.monotonic())
        if r is None:
            break
        if r.mtype == CON:
            peer.ack(r)
        got.append(r)
    return got + received(peer, extra)


def asleep_after(sim, mark):
    """tbsim marks the device asleep (its window ran out) in a line logged after `mark`."""
    return sim.wait_for_log(re.compile(r" power \w+: device \w+ asleep$"), timeout=10, start=mark)


def test_psm_queues_attribute_updates_and_holds_rpcs_until_the_next_uplink(tbsim_factory):
    # A 2 s window: the post right after subscribing falls inside it however loaded the machine.
    sim = tbsim_factory("--power-mode", "PSM", "--psm-activity-timer-ms", "2000")
    url = shared_url(sim)
    sim.rest.post(url, {"c": 0})
    p = RawPeer(sim.coap_port)
    try:
        first = subscribe(p, TOKEN, "attributes", b"at")
        assert json.loads(first.payload) == {"c": 0}
        subscribe(p, TOKEN, "rpc", b"rp")
        mark = sim.mark()
        # Within the window after an uplink: pushed at once.
        sim.rest.post(url, {"in": 1})
        got = received_n(p, 1)
        assert [json.loads(g.payload) for g in got] == [{"in": 1}]
        # the window (counted from the ACK, itself an uplink) runs out: asleep, as tbsim says
        assert asleep_after(sim, mark), sim.log_text()
        mark = sim.mark()
        sim.rest.post(url, {"a": 1})
        sim.rest.post(url, {"a": 2, "b": 3})
        sim.rest.delete(url.replace("/attributes/SHARED_SCOPE", "/SHARED_SCOPE"), keys="c")
        out = []
        did = sim.rest.device_id("Thermo-1")
        t = threading.Thread(target=lambda: out.append(sim.rest.request(
            "POST", "/api/plugins/rpc/twoway/" + did, {"method": "getGpio", "params": {"pin": 4}, "timeout": 10000})))
        t.start()
        assert sim.wait_for_log("held: device asleep", timeout=3, start=mark), sim.log_text()
        assert sim.wait_for_log("queued: device asleep", timeout=1, start=mark)
        assert received(p, 0.4) == []  # nothing goes to a sleeping device
        # The next uplink wakes it: one merged notification, then the RPC.
        r = p.exchange(Code.POST, "api/v1/%s/telemetry" % TOKEN, '{"t":1}')
        assert r.code == Code.CREATED
        got = received_n(p, 2)
        attrs = [g for g in got if g.token == b"at"]
        rpcs = [g for g in got if g.token == b"rp"]
        assert len(attrs) == 1 and json.loads(attrs[0].payload) == {"a": 2, "b": 3, "deleted": ["c"]}, got
        assert len(rpcs) == 1 and json.loads(rpcs[0].payload) == {"id": 1, "method": "getGpio",
                                                                  "params": {"pin": 4}}
        assert p.exchange(Code.POST, "api/v1/%s/rpc/1" % TOKEN, '{"pin":4,"value":0}').code == Code.CREATED
        t.join(10)
        assert out == [(200, {"pin": 4, "value": 0})]
    finally:
        p.close()


def test_rest_transport_configuration_and_edrx_one_downlink_per_uplink(tbsim):
    rest = tbsim.rest
    cfg = {"type": "COAP", "clientSettings": {"powerMode": "E_DRX", "pagingTransmissionWindow": 500,
                                              "edrxCycle": 81000, "psmActivityTimer": None}}
    prof = rest.post("/api/deviceProfile", {"name": "nb-iot", "type": "DEFAULT", "transportType": "COAP",
                                            "profileData": {"transportConfiguration": cfg}})
    assert prof["transportType"] == "COAP"
    got = rest.get("/api/deviceProfile/" + prof["id"]["id"])["profileData"]["transportConfiguration"]
    assert got["type"] == "COAP" and got["clientSettings"] == cfg["clientSettings"]
    status, _ = rest.request("POST", "/api/deviceProfile", {"name": "bad", "profileData": {
        "transportConfiguration": {"type": "COAP", "clientSettings": {"powerMode": "SNOOZE"}}}})
    assert status == 400
    dev = rest.post("/api/device", {"name": "nb-1", "deviceProfileId": prof["id"]}, accessToken="NB_TOKEN")
    assert dev["deviceData"]["transportConfiguration"] == {"type": "DEFAULT"}
    url = shared_url(tbsim, "nb-1")
    p = RawPeer(tbsim.coap_port)
    try:
        # NON, so that no ACK (an uplink too) re-opens the window.
        mark = tbsim.mark()
        subscribe(p, "NB_TOKEN", "attributes", b"nb", mtype=NON)
        assert asleep_after(tbsim, mark), tbsim.log_text()  # the paging window ran out
        rest.post(url, {"x": 1})
        rest.post(url, {"x": 2})
        got = received_n(p, 1, extra=0.4)
        assert [json.loads(g.payload) for g in got] == [{"x": 1}]  # one downlink after the window, per uplink
        assert p.exchange(Code.POST, "api/v1/NB_TOKEN/telemetry", '{"t":1}').code == Code.CREATED
        assert [json.loads(g.payload) for g in received_n(p, 1)] == [{"x": 2}]
        # The device's own configuration wins over its profile's (spec §13): DRX, always reachable.
        dev["deviceData"] = {"transportConfiguration": {"type": "COAP", "powerMode": "DRX"}}
        dev = rest.post("/api/device", dev)
        assert dev["deviceData"]["transportConfiguration"]["powerMode"] == "DRX"
        time.sleep(0.7)  # past the paging window again: DRX does not care
        rest.post(url, {"x": 3})
        rest.post(url, {"x": 4})
        assert [json.loads(g.payload) for g in received_n(p, 2)] == [{"x": 3}, {"x": 4}]
    finally:
        p.close()
