"""tbsim on the wire: response shapes of spec §3, routing and codes of §2, dedup, typing (§5), §6.1, §9, §14."""

import time

import pytest
from aiocoap.numbers import Code

from tbsim_wire import ACK, CON, NON, RawPeer

TOKEN = "A1_TEST_TOKEN"


@pytest.fixture
def peer(tbsim):
    p = RawPeer(tbsim.coap_port)
    yield p
    p.close()


def api(feature):
    return "api/v1/%s/%s" % (TOKEN, feature)


def test_con_telemetry_gets_separate_con_with_new_mid_and_no_ack(peer):
    req = peer.request(Code.POST, api("telemetry"), '{"temperature":21.5}')
    r = peer.recv()
    assert r.mtype == CON and r.code == Code.CREATED  # spec §3: separate CON, no empty ACK first
    assert r.token == req.token and r.mid != req.mid
    assert r.at - req.sent_at < 0.4 and not r.payload
    peer.ack(r)
    assert peer.recv(0.7) is None  # no deferred empty ACK, no retransmission once ACKed


def test_non_request_gets_non_response_with_new_mid(peer):
    req = peer.request(Code.POST, api("attributes"), '{"fw":"1.0"}', mtype=NON)
    r = peer.recv()
    assert r.mtype == NON and r.code == Code.CREATED and r.mid != req.mid and r.token == req.token
    assert peer.recv(0.7) is None


BARE_ERRORS = [
    ("api/v1/WRONG_TOKEN/telemetry", '{"a":1}', Code.UNAUTHORIZED),
    (api("telemetry"), "not json", Code.BAD_REQUEST),
    (api("telemetry"), "42", Code.BAD_REQUEST),
    (api("telemetry"), "[1]", Code.BAD_REQUEST),
    (api("telemetry"), "", Code.BAD_REQUEST),
    (api("attributes"), "[1]", Code.BAD_REQUEST),
    (api("nosuchfeature"), "{}", Code.BAD_REQUEST),
    ("api/v1/x", "{}", Code.BAD_REQUEST),
    ("foo/bar", "{}", Code.NOT_FOUND),
    ("api/v2/%s/telemetry" % TOKEN, "{}", Code.NOT_FOUND),
    (api("rpc"), '{"params":{}}', Code.INTERNAL_SERVER_ERROR),
    (api("rpc/7"), "[1,2]", Code.INTERNAL_SERVER_ERROR),
    (api("rpc/7"), "{bad", Code.INTERNAL_SERVER_ERROR),
]


def test_bare_errors_are_piggybacked(peer):
    for path, payload, code in BARE_ERRORS:
        req = peer.request(Code.POST, path, payload)
        r = peer.recv()
        assert (r.mtype, r.code, r.mid, r.token) == (ACK, code, req.mid, req.token), (path, payload)
        assert not r.payload
    assert peer.recv(0.6) is None  # no empty ACK later for requests already answered


def test_other_methods_and_get_on_telemetry(peer):
    for method in (Code.PUT, Code.DELETE):
        req = peer.request(method, api("telemetry"), "{}")
        r = peer.recv()
        assert (r.mtype, r.code, r.mid) == (ACK, Code.METHOD_NOT_ALLOWED, req.mid)
    req = peer.request(Code.GET, api("telemetry"))
    assert peer.recv().code == Code.BAD_REQUEST
    req = peer.request(Code.GET, api("claim"))
    assert peer.recv().code == Code.BAD_REQUEST


def test_routing_case_single_option_and_trailing_segments(tbsim, peer):
    assert peer.exchange(Code.POST, api("TeLeMeTrY"), '{"a":1}').code == Code.CREATED
    r = peer.exchange(Code.POST, "/" + api("telemetry"), '{"b":2}', path_as_one_option=True)
    assert r.code == Code.CREATED
    r = peer.exchange(Code.POST, api("telemetry") + "/extra/segments", '{"c":3}')
    assert r.code == Code.CREATED
    did = tbsim.rest.device_id("Thermo-1")
    got = tbsim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys="a,b,c")
    assert sorted(got) == ["a", "b", "c"]


def test_slow_answer_gets_empty_ack_at_500ms_then_separate_con(peer):
    # tbsim's built-in client RPC "delay" answers after params.ms (a slow rule chain).
    req = peer.request(Code.POST, api("rpc"), '{"method":"delay","params":{"ms":900}}')
    ack = peer.recv()
    assert (ack.mtype, ack.code, ack.mid) == (ACK, Code.EMPTY, req.mid)
    assert 0.4 < ack.at - req.sent_at < 0.75
    r = peer.recv()
    assert r.mtype == CON and r.code == Code.CONTENT and r.token == req.token and r.mid != req.mid
    assert r.at - req.sent_at > 0.85
    assert r.payload == b'{"ms":900}' and r.opt.content_format == 50
    peer.ack(r)


def test_unanswered_client_rpc_gets_only_the_empty_ack(peer):
    req = peer.request(Code.POST, api("rpc"), '{"method":"notHandled","params":{}}')
    got = peer.recv_all(1.3)
    assert len(got) == 1 and got[0].mtype == ACK and got[0].code == Code.EMPTY and got[0].mid == req.mid


def test_client_rpc_get_current_time_and_echo(peer):
    before = int(time.time() * 1000)
    r = peer.exchange(Code.POST, api("rpc"), '{"method":"getCurrentTime","params":{}}', content_format=0)
    assert r.mtype == CON and r.code == Code.CONTENT and r.opt.content_format == 0  # echoes request's format
    import json
    assert abs(json.loads(r.payload)["time"] - before) < 5000
    r = peer.exchange(Code.POST, api("rpc"), '{"method":"echo","params":{"x":[1,2.5]}}')
    assert r.payload == b'{"x":[1,2.5]}'


def test_duplicate_request_is_answered_again_not_processed_again(tbsim, peer):
    req = peer.request(Code.POST, api("telemetry"), '{"dup":1}')
    first = peer.recv()
    assert first.mtype == CON
    peer.send(req)  # retransmission of the same request (same MID): CF re-sends ACK and response
    got = peer.recv_n(2)
    kinds = sorted((g.mtype.name, g.code.dotted, g.mid) for g in got)
    assert kinds == sorted([("ACK", "0.00", req.mid), ("CON", "2.01", first.mid)])
    peer.ack(first)
    peer.send(req)  # after the response was ACKed: only the empty ACK
    got = peer.recv_n(1)
    assert [(g.mtype, g.code, g.mid) for g in got] == [(ACK, Code.EMPTY, req.mid)]
    assert tbsim.wait_for_log("duplicate") is not None
    assert tbsim.log_text().count("POST telemetry Thermo-1") == 1
    # a piggybacked error is re-sent as the same ACK
    bad = peer.request(Code.POST, "api/v1/NOPE/telemetry", "{}")
    a1 = peer.recv()
    peer.send(bad)
    a2 = peer.recv()
    assert a1.raw == a2.raw


def test_unacked_separate_con_response_is_retransmitted(tbsim_factory):
    sim = tbsim_factory("--ack-timeout", "0.1")
    p = RawPeer(sim.coap_port)
    try:
        req = p.request(Code.POST, api("telemetry"), '{"r":1}')
        got = p.recv_n(3)  # after 0.1-0.15 s, then doubled: the first 2 retransmissions
        assert len(got) >= 3 and all(g.mtype == CON and g.mid == got[0].mid for g in got)
        assert got[0].mid != req.mid
        p.ack(got[-1])
        assert p.recv(0.5) is None
    finally:
        p.close()


def test_attribute_get_404_without_payload_and_sections(tbsim, peer):
    r = peer.exchange(Code.GET, api("attributes"))
    assert r.code == Code.NOT_FOUND and r.mtype == CON and not r.payload
    peer.exchange(Code.POST, api("attributes"), '{"attribute1":"value1","attribute2":true,"x":null}')
    did = tbsim.rest.device_id("Thermo-1")
    tbsim.rest.post("/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % did, {"shared1": 42.0})
    r = peer.exchange(Code.GET, api("attributes"), queries=["clientKeys=attribute1,attribute2",
                                                           "sharedKeys=shared1,shared2"])
    assert r.code == Code.CONTENT and r.opt.content_format == 50
    assert r.payload == b'{"client":{"attribute1":"value1","attribute2":true},"shared":{"shared1":42.0}}'
    r = peer.exchange(Code.GET, api("attributes"), queries=["sharedKeys=shared1"], content_format=0)
    assert r.payload == b'{"shared":{"shared1":42.0}}' and r.opt.content_format == 0
    # one option holding both queries is ignored (it does not split into two parts): all attributes
    r = peer.exchange(Code.GET, api("attributes"), queries=["clientKeys=attribute1&sharedKeys=nothing"])
    assert b'"client"' in r.payload and b'"shared"' in r.payload
    r = peer.exchange(Code.GET, api("attributes"), queries=["clientKeys=missing"])
    assert r.code == Code.NOT_FOUND and not r.payload


def test_value_typing_via_rest_strict_types(tbsim, peer):
    payload = '{"sum":0.30000000000000004,"d":42.0,"s":"123","l":73,"b":true,"j":{"n":[1,2]},' \
              '"big":123456789012345678901,"e":1e3,"f":"1.5","t":"text"}'
    assert peer.exchange(Code.POST, api("telemetry"), payload).code == Code.CREATED
    did = tbsim.rest.device_id("Thermo-1")
    url = "/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did
    keys = "sum,d,s,l,b,j,big,e,f,t"
    strict = {k: v[0]["value"] for k, v in tbsim.rest.get(url, keys=keys, useStrictDataTypes="true").items()}
    assert strict == {"sum": "0.30000000000000004", "d": 42.0, "s": 123, "l": 73, "b": True, "j": {"n": [1, 2]},
                      "big": "123456789012345678901", "e": 1000, "f": 1.5, "t": "text"}
    assert isinstance(strict["d"], float) and isinstance(strict["s"], int)
    loose = {k: v[0]["value"] for k, v in tbsim.rest.get(url, keys=keys).items()}
    assert loose["d"] == "42.0" and loose["l"] == "73" and loose["b"] == "true"


def test_timestamped_and_array_telemetry_and_history(tbsim, peer):
    body = '[{"ts":1451649600512,"values":{"k":1}},{"ts":1451649600513,"values":{"k":2}},{"other":"x"}]'
    assert peer.exchange(Code.POST, api("telemetry"), body).code == Code.CREATED
    did = tbsim.rest.device_id("Thermo-1")
    url = "/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did
    hist = tbsim.rest.get(url, keys="k", startTs="0", endTs=str(int(time.time() * 1000)), limit="10")
    assert [(e["ts"], e["value"]) for e in hist["k"]] == [(1451649600513, "2"), (1451649600512, "1")]
    assert sorted(tbsim.rest.get("/api/plugins/telemetry/DEVICE/%s/keys/timeseries" % did)) == ["k", "other"]


def test_provisioning_outcomes(tbsim, peer):
    key, secret = tbsim.provision_key, tbsim.provision_secret
    ok = '{"deviceName":"New-1","provisionDeviceKey":"%s","provisionDeviceSecret":"%s","token":"NEW1_TOKEN"}'
    req = peer.request(Code.POST, "api/v1/provision", ok % (key, secret))
    r = peer.recv()
    assert (r.mtype, r.code, r.mid) == (ACK, Code.CREATED, req.mid) and r.opt.content_format == 0
    assert r.payload == b'{"credentialsValue":"NEW1_TOKEN","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"}'
    assert peer.exchange(Code.POST, "api/v1/NEW1_TOKEN/telemetry", '{"a":1}').code == Code.CREATED
    r = peer.exchange(Code.POST, "api/v1/provision", ok % (key, secret))
    assert r.code == Code.BAD_REQUEST
    assert r.payload == b'{"errorMsg":"Failed to provision device!","status":"FAILURE"}'
    r = peer.exchange(Code.POST, "api/v1/anything/provision",
                      '{"deviceName":"New-2","provisionDeviceKey":"%s","provisionDeviceSecret":"bad"}' % key)
    assert r.payload == b'{"errorMsg":"Provision data was not found!","status":"NOT_FOUND"}'
    r = peer.exchange(Code.POST, "api/v1/provision", '{"deviceName":"New-3","provisionDeviceKey":"%s"}' % key)
    assert r.code == Code.BAD_REQUEST and not r.payload
    r = peer.exchange(Code.POST, "api/v1/provision",
                      '{"provisionDeviceKey":"%s","provisionDeviceSecret":"%s"}' % (key, secret))
    import json
    body = json.loads(r.payload)
    assert r.code == Code.CREATED and len(body["credentialsValue"]) == 20
    page = tbsim.rest.get("/api/tenant/devices", pageSize="10", page="0")
    assert page["totalElements"] == 3 and any(len(d["name"]) == 20 for d in page["data"])


def test_claim(tbsim, peer):
    assert peer.exchange(Code.POST, api("claim")).code == Code.CREATED  # empty payload allowed
    r = peer.exchange(Code.POST, api("claim"), '{"secretKey":"abc","durationMs":60000}')
    assert r.code == Code.CREATED and r.mtype == CON
    assert peer.exchange(Code.POST, api("claim"), "[1]").code == Code.BAD_REQUEST
    status, body = tbsim.rest.request("POST", "/api/customer/device/Thermo-1/claim", {"secretKey": "wrong"})
    assert status == 400 and body["response"] == "FAILURE"
    body = tbsim.rest.post("/api/customer/device/Thermo-1/claim", {"secretKey": "abc"})
    assert body["response"] == "SUCCESS"


def test_root_and_ota_resources(peer):
    r = peer.exchange(Code.GET, "")
    assert r.code == Code.CONTENT and r.mtype == ACK
    req = peer.request(Code.GET, "fw/" + TOKEN)
    ack = peer.recv()
    assert (ack.mtype, ack.code, ack.mid) == (ACK, Code.EMPTY, req.mid)  # OTA accepts at once
    r = peer.recv()
    assert r.code == Code.NOT_FOUND and r.mtype == CON  # no package assigned
    peer.ack(r)


def test_slow_core_option_gives_empty_ack_then_separate_response_of_request_type(tbsim_factory):
    sim = tbsim_factory("--delay-ms", "700")
    p = RawPeer(sim.coap_port)
    try:
        req = p.request(Code.POST, api("telemetry"), '{"a":1}')
        ack = p.recv()
        assert (ack.mtype, ack.code, ack.mid) == (ACK, Code.EMPTY, req.mid) and 0.4 < ack.at - req.sent_at < 0.7
        r = p.recv()
        assert r.mtype == CON and r.code == Code.CREATED and r.token == req.token
        p.ack(r)
        # an untyped answer (provision) is no longer piggybacked once the empty ACK went out
        req = p.request(Code.POST, "api/v1/provision", '{"provisionDeviceKey":"x","provisionDeviceSecret":"y"}')
        assert p.recv().code == Code.EMPTY
        r = p.recv()
        assert r.mtype == CON and r.code == Code.BAD_REQUEST and b"NOT_FOUND" in r.payload
        p.ack(r)
        req = p.request(Code.POST, api("telemetry"), '{"a":1}', mtype=NON)
        r = p.recv()
        assert r.mtype == NON and r.code == Code.CREATED and r.at - req.sent_at > 0.65
    finally:
        p.close()


def test_block1_request_body_is_assembled(tbsim, peer):
    body = ('{"blob":"%s","n":7}' % ("x" * 2000)).encode()
    size = 1024
    blocks = [body[i:i + size] for i in range(0, len(body), size)]
    for num, chunk in enumerate(blocks):
        more = num < len(blocks) - 1
        req = peer.build(Code.POST, api("telemetry"), chunk)
        req.opt.block1 = (num, more, 6)
        peer.send(req)
        r = peer.recv()
        if more:  # 2.31 Continue, piggybacked, echoing the block
            assert (r.mtype, r.code, r.mid, tuple(r.opt.block1)) == (ACK, Code.CONTINUE, req.mid, (num, True, 6))
    assert r.mtype == CON and r.code == Code.CREATED and tuple(r.opt.block1) == (len(blocks) - 1, False, 6)
    peer.ack(r)
    did = tbsim.rest.device_id("Thermo-1")
    got = tbsim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys="blob,n")
    assert got["n"][0]["value"] == "7" and len(got["blob"][0]["value"]) == 2000
    # a block out of sequence: 4.08
    req = peer.build(Code.POST, api("telemetry"), b"{}")
    req.opt.block1 = (3, False, 6)
    peer.send(req)
    assert peer.recv().code == Code.REQUEST_ENTITY_INCOMPLETE
