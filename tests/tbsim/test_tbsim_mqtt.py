"""tbsim's MQTT device API (spec thingsboard-mqtt.md) against paho-mqtt, a real MQTT 3.1.1 client: credentials and
CONNACK codes, telemetry and attributes at QoS 0/1, attribute requests, shared-attribute pushes, server-side RPC
through the REST API, client-side RPC, claiming, provisioning, OTA chunks, protobuf profiles, X.509 over TLS.
Every test reads the result back through tbsim's REST API; waits are on messages and events, never on sleeps."""

import hashlib
import json
import queue
import re
import ssl
import threading

import paho.mqtt.client as mqtt
import pytest

from tbsim import protoschema, tls
from test_tbsim_ota import assign, upload

TOKEN = "A1_TEST_TOKEN"
WAIT = 10.0
# paho reports a 3.1.1 CONNACK code as its MQTT 5 reason code (convert_connack_rc_to_reason_code): back to 3.1.1
CONNACK = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}
B = protoschema.builtin


def mqtt_port(sim, scheme="MQTT mqtt"):
    return int(re.search(scheme + r"://[\d.]+:(\d+)", sim.wait_for_log("tbsim: CoAP")).group(1))


class Dev:
    """A paho client on its own network thread; messages, SUBACKs and the disconnect are events to wait on."""

    def __init__(self, port, user=TOKEN, password=None, client_id="", clean=True, tls_args=None):
        self.msgs = queue.Queue()
        self.subacks = queue.Queue()
        self.connack = queue.Queue()
        self.gone = threading.Event()
        c = self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                                 protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        c.on_connect = lambda _c, _u, flags, rc, _p: self.connack.put((flags.session_present, CONNACK[rc.value]))
        c.on_message = lambda _c, _u, msg: self.msgs.put(msg)
        c.on_subscribe = lambda _c, _u, mid, codes, _p: self.subacks.put([r.value for r in codes])
        c.on_disconnect = lambda *_a: self.gone.set()
        if user is not None or password is not None:
            c.username_pw_set(user, password)
        if tls_args:
            c.tls_set(**tls_args)
        c.connect("127.0.0.1", port, keepalive=60)
        c.loop_start()
        self.session_present, self.code = self.connack.get(timeout=WAIT)

    def subscribe(self, topic, qos=1):
        self.c.subscribe(topic, qos)
        return self.subacks.get(timeout=WAIT)

    def publish(self, topic, payload, qos=1):
        info = self.c.publish(topic, payload, qos)
        info.wait_for_publish(WAIT)  # QoS 1: until the PUBACK
        assert info.is_published()

    def expect(self, topic):
        msg = self.msgs.get(timeout=WAIT)
        assert msg.topic == topic, (msg.topic, msg.payload)
        return msg

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def sim(tbsim_factory):
    s = tbsim_factory("--mqtt-port", "0", "--client-rpc-timeout-ms", "300", "--rpc-ack-timeout", "2")
    s.mqtt_port = mqtt_port(s)
    return s


@pytest.fixture
def dev(sim):
    made = []

    def connect(**kw):
        d = Dev(sim.mqtt_port, **kw)
        made.append(d)
        return d

    yield connect
    for d in made:
        d.close()


def did(sim, name="Thermo-1"):
    return sim.rest.device_id(name)


def latest(sim, keys, name="Thermo-1"):
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did(sim, name), keys=keys,
                       useStrictDataTypes="true")
    return {k: v[0]["value"] for k, v in got.items()}


def attributes(sim, scope, name="Thermo-1"):
    rows = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/attributes/%s" % (did(sim, name), scope))
    return {r["key"]: r["value"] for r in rows}


def test_connect_codes_and_session_present(sim, dev):
    d = dev(clean=False, client_id="thermo")
    assert (d.code, d.session_present) == (0, True)  # sessionPresent = !cleanSession, nothing is kept (§2.3)
    assert dev(password="any password", client_id="other").code == 0  # a token ignores client id and password
    assert dev(user="WRONG_TOKEN").code == 5
    assert dev(user=None, client_id="someone").code == 2  # no user name, a client id: 0x02
    assert dev(user="").code == 5  # an empty user name: 0x05, never 0x04 over MQTT 3.1.1
    assert "CONNACK 0x04" not in sim.log_text()


def test_telemetry_and_attributes_at_qos_0_and_1(sim, dev):
    d = dev()
    d.publish("v1/devices/me/telemetry", '{"temperature":25,"humidity":40.5}', qos=1)
    d.publish("v1/devices/me/telemetry", '[{"ts":1451649600512,"values":{"pressure":1013}}]', qos=1)
    d.publish("v1/devices/me/attributes", '{"firmware":"v1.0","n":7}', qos=1)
    d.publish("v1/devices/me/telemetry", '{"q0":1}', qos=0)
    d.publish("v1/devices/me/telemetry", '{"after":true}', qos=1)  # PUBACKed after the QoS 0 one is stored
    assert latest(sim, "temperature,humidity,pressure,q0,after") == {
        "temperature": 25, "humidity": 40.5, "pressure": 1013, "q0": 1, "after": True}
    assert attributes(sim, "CLIENT_SCOPE") == {"firmware": "v1.0", "n": 7}


def test_attribute_request_without_subscription(sim, dev):
    sim.rest.post("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did(sim), {"shared1": "s", "shared2": 2})
    d = dev()
    d.publish("v1/devices/me/attributes", '{"attribute1":"value1","attribute2":true}')
    # no subscription to .../attributes/response/+: the answer comes anyway, at QoS 1 (§3.3)
    d.publish("v1/devices/me/attributes/request/1", '{"clientKeys":"attribute1,attribute2","sharedKeys":"shared1"}')
    m = d.expect("v1/devices/me/attributes/response/1")
    assert m.qos == 1
    assert json.loads(m.payload) == {"client": {"attribute1": "value1", "attribute2": True}, "shared": {"shared1": "s"}}
    d.publish("v1/devices/me/attributes/request/007", "{}")  # all of both scopes; the id printed as an int
    assert json.loads(d.expect("v1/devices/me/attributes/response/7").payload) == {
        "client": {"attribute1": "value1", "attribute2": True}, "shared": {"shared1": "s", "shared2": 2}}
    assert d.subscribe("v1/devices/me/attributes/response/+", qos=0) == [0]
    d.publish("v1/devices/me/attributes/request/2", '{"sharedKeys":"nothing"}')
    m = d.expect("v1/devices/me/attributes/response/2")
    assert (m.payload, m.qos) == (b"{}", 0)  # nothing found: {}; QoS now that of the subscription


def test_shared_attribute_updates_pushed_to_subscribers(sim, dev):
    d = dev()
    assert d.subscribe("v1/devices/me/attributes") == [1]
    sim.rest.post("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did(sim), {"targetTemperature": 21.5})
    m = d.expect("v1/devices/me/attributes")  # the first message: no snapshot was sent on SUBSCRIBE (§6)
    assert json.loads(m.payload) == {"targetTemperature": 21.5} and m.qos == 1
    sim.rest.delete("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did(sim), keys="targetTemperature")
    assert json.loads(d.expect("v1/devices/me/attributes").payload) == {"deleted": ["targetTemperature"]}
    assert attributes(sim, "SHARED_SCOPE") == {}


def _rest_rpc(sim, kind, body, name="Thermo-1"):
    """A REST RPC call on its own thread (it returns when the device answers); a queue of (status, body)."""
    out = queue.Queue()
    path = "/api/plugins/rpc/%s/%s" % (kind, did(sim, name))
    threading.Thread(target=lambda: out.put(sim.rest.request("POST", path, body)), daemon=True).start()
    return out


def test_server_side_rpc_twoway_and_oneway(sim, dev):
    d = dev()
    assert d.subscribe("v1/devices/me/rpc/request/+") == [1]
    pending = _rest_rpc(sim, "twoway", {"method": "setGpio", "params": {"pin": 23, "value": 1}, "timeout": 5000})
    m = d.msgs.get(timeout=WAIT)
    assert m.topic.startswith("v1/devices/me/rpc/request/") and m.qos == 1
    assert json.loads(m.payload) == {"method": "setGpio", "params": {"pin": 23, "value": 1}}  # no "id" (§7)
    rid = m.topic.rsplit("/", 1)[1]
    d.publish("v1/devices/me/rpc/response/" + rid, '{"pin":23,"value":1,"ok":true}')
    assert pending.get(timeout=WAIT) == (200, {"pin": 23, "value": 1, "ok": True})
    done = _rest_rpc(sim, "oneway", {"method": "reboot", "params": {}, "timeout": 5000})
    assert json.loads(d.msgs.get(timeout=WAIT).payload) == {"method": "reboot", "params": {}}
    assert done.get(timeout=WAIT)[0] == 200  # a one-way RPC completes on the device's PUBACK
    # persistent: queued while nobody listens, pushed when the device subscribes again
    rec = sim.rest.post("/api/plugins/rpc/twoway/%s" % did(sim), {"method": "later", "params": 1, "persistent": True,
                                                                  "timeout": 60000})
    m = d.msgs.get(timeout=WAIT)
    d.close()
    d2 = dev()
    assert d2.subscribe("v1/devices/me/rpc/request/+") == [1]
    m2 = d2.msgs.get(timeout=WAIT)  # re-sent on the new subscription, with the same id
    assert m2.topic == m.topic and json.loads(m2.payload) == {"method": "later", "params": 1}
    d2.publish(m2.topic.replace("request", "response"), '"done"')  # a reply is passed on verbatim
    got = sim.rest.get("/api/rpc/persistent/" + rec["rpcId"])
    assert (got["status"], got["response"]) == ("SUCCESSFUL", "done")


def test_client_side_rpc(sim, dev):
    d = dev()
    d.publish("v1/devices/me/rpc/request/5", '{"method":"getCurrentTime","params":{}}')
    m = d.expect("v1/devices/me/rpc/response/5")
    assert m.qos == 1 and isinstance(json.loads(m.payload)["time"], int)
    d.publish("v1/devices/me/rpc/request/6", '{"method":"echo","params":{"a":[1,2]}}')
    assert json.loads(d.expect("v1/devices/me/rpc/response/6").payload) == {"a": [1, 2]}
    d.publish("v1/devices/me/rpc/request/7", '{"method":"noReplyNode","params":{}}')
    assert json.loads(d.expect("v1/devices/me/rpc/response/7").payload) == {"error": "timeout"}  # §8, 300 ms here
    d.publish("v1/devices/me/rpc/request/8", '{"method":"getSessionLimits","params":{}}')
    limits = json.loads(d.expect("v1/devices/me/rpc/response/8").payload)
    assert (limits["maxPayloadSize"], limits["maxInflightMessages"]) == (65536, 100)
    d.c.publish("v1/devices/me/rpc/request/9", '{"params":{}}', qos=1)  # no method: the connection is closed
    assert d.gone.wait(WAIT)


def test_claiming(sim, dev):
    d = dev()
    d.publish("v1/devices/me/claim", '{"secretKey":"value","durationMs":60000}')
    status, body = sim.rest.request("POST", "/api/customer/device/Thermo-1/claim", {"secretKey": "wrong"})
    assert status == 400
    status, body = sim.rest.request("POST", "/api/customer/device/Thermo-1/claim", {"secretKey": "value"})
    assert (status, body["response"]) == (200, "SUCCESS")


def test_provisioning_then_the_new_credentials(sim, dev):
    p = dev(user="provision", client_id="any")
    assert p.code == 0
    p.publish("/provision/request", json.dumps({"deviceName": "prov-1", "provisionDeviceKey": sim.provision_key,
                                                "provisionDeviceSecret": sim.provision_secret}))
    m = p.expect("/provision/response")  # PUBACK first, then the answer, without a subscription
    answer = json.loads(m.payload)
    assert answer["status"] == "SUCCESS" and answer["credentialsType"] == "ACCESS_TOKEN"
    d = dev(user=answer["credentialsValue"])
    assert d.code == 0
    d.publish("v1/devices/me/telemetry", '{"provisioned":1}')
    assert latest(sim, "provisioned", name="prov-1") == {"provisioned": 1}
    # MQTT_BASIC credentials, by clientId "provision" (the official SDK's way)
    p2 = dev(user=None, client_id="provision")
    p2.publish("/provision/request", json.dumps({
        "deviceName": "prov-2", "provisionDeviceKey": sim.provision_key, "provisionDeviceSecret": sim.provision_secret,
        "credentialsType": "MQTT_BASIC", "clientId": "cid-2", "username": "user-2", "password": "pw-2"}))
    answer = json.loads(p2.expect("/provision/response").payload)
    assert answer["credentialsValue"] == {"clientId": "cid-2", "userName": "user-2", "password": "pw-2"}
    assert dev(client_id="cid-2", user="user-2", password="pw-2").code == 0
    assert dev(client_id="cid-2", user="user-2", password="wrong").code == 5  # no fallback after a wrong password
    p3 = dev(user="provision")
    p3.publish("/provision/request", '{"deviceName":"x","provisionDeviceKey":"nope","provisionDeviceSecret":"nope"}')
    assert json.loads(p3.expect("/provision/response").payload) == {"errorMsg": "Provision data was not found!",
                                                                     "status": "NOT_FOUND"}


def test_mqtt_basic_credentials_over_rest(sim, dev):
    dev_id = did(sim)
    sim.rest.post("/api/device/credentials", {"deviceId": {"id": dev_id, "entityType": "DEVICE"},
                                              "credentialsType": "MQTT_BASIC", "credentialsValue": json.dumps(
                                                  {"clientId": "c1", "userName": "u1", "password": "p1"})})
    assert dev(client_id="c1", user="u1", password="p1").code == 0
    assert dev(client_id="c1", user="u1", password="p2").code == 5
    assert dev(user=TOKEN).code == 5  # the token is gone with the new credentials


def test_ota_chunks_and_fw_attributes(sim, dev):
    image = bytes(range(256)) * 10 + b"tail-0123456789"  # 2575 bytes
    d = dev()
    assert d.subscribe("v1/devices/me/attributes") == [1]
    assign(sim, upload(sim, image))
    attrs = json.loads(d.expect("v1/devices/me/attributes").payload)
    assert attrs["fw_title"] == "tb-fw" and attrs["fw_size"] == len(image)
    assert attrs["fw_checksum"] == hashlib.sha256(image).hexdigest()
    got = b""
    for chunk in range(4):
        d.publish("v2/fw/request/1/chunk/%d" % chunk, "1024")
        m = d.expect("v2/fw/response/1/chunk/%d" % chunk)  # raw bytes, at QoS 1 without a subscription
        assert m.qos == 1
        got += m.payload
    assert got == image and m.payload == b""  # chunk 3 is past the end: a zero-length PUBLISH (§11.2)
    d.publish("v2/fw/request/1/chunk/1", "")  # an empty payload reuses the requestId's chunk size
    assert d.expect("v2/fw/response/1/chunk/1").payload == image[1024:2048]
    d.publish("v2/fw/request/2/chunk/0", "")  # a new requestId, no size: the whole image in one PUBLISH
    assert d.expect("v2/fw/response/2/chunk/0").payload == image
    d.publish("v1/devices/me/telemetry", '{"fw_state":"UPDATED","current_fw_title":"tb-fw"}')
    assert latest(sim, "fw_state")["fw_state"] == "UPDATED"
    d.c.publish("v2/sw/request/3/chunk/0", "1024", qos=1)  # no software assigned: v2/fw/error, then close
    m = d.expect("v2/fw/error")
    assert m.payload == b"NOT_FOUND" and d.gone.wait(WAIT)


def test_short_v2_topics(sim, dev):
    d = dev()
    d.publish("v2/t", '{"short":1}')
    d.publish("v2/a/j", '{"shortAttr":"x"}')
    d.publish("v2/a/req/3", '{"clientKeys":"shortAttr"}')
    assert json.loads(d.expect("v2/a/res/3").payload) == {"client": {"shortAttr": "x"}}
    assert d.subscribe("v2/r/req/+") == [1]
    pending = _rest_rpc(sim, "twoway", {"method": "m", "params": {}, "timeout": 5000})
    m = d.msgs.get(timeout=WAIT)
    assert m.topic.startswith("v2/r/req/")
    d.publish("v2/r/res/" + m.topic.rsplit("/", 1)[1], '{"r":1}')
    assert pending.get(timeout=WAIT) == (200, {"r": 1})
    assert latest(sim, "short") == {"short": 1}


def test_one_session_per_device(sim, dev):
    first = dev(client_id="a")
    second = dev(client_id="b")
    assert first.gone.wait(WAIT) and not second.gone.is_set()  # the newer connection wins (§2.7)
    second.publish("v1/devices/me/telemetry", '{"alive":1}')
    assert latest(sim, "alive") == {"alive": 1}


RPC_SCHEMA = """syntax = "proto3";
package rpc;
message RpcRequestMsg {
  optional string method = 1;
  optional int32 requestId = 2;
  Params params = 3;
  message Params { int32 pin = 1; int32 value = 2; }
}"""


def test_protobuf_mqtt_profile(sim, dev):
    telemetry = protoschema.profile_message(protoschema.default_schema("telemetry"))
    rpc_request = protoschema.profile_message(RPC_SCHEMA)
    rpc_response = protoschema.profile_message(protoschema.default_schema("rpc_response"))
    profile = sim.rest.post("/api/deviceProfile", {"name": "mqtt-proto", "transportType": "MQTT", "profileData": {
        "transportConfiguration": {"type": "MQTT", "transportPayloadTypeConfiguration": {
            "transportPayloadType": "PROTOBUF", "deviceRpcRequestProtoSchema": RPC_SCHEMA}}}})
    assert profile["transportType"] == "MQTT"
    sim.rest.post("/api/device", {"name": "Proto-1", "deviceProfileId": profile["id"]}, accessToken="PTOK")
    d = dev(user="PTOK")
    d.publish("v1/devices/me/telemetry", telemetry(temperature=21.5, humidity=40.0).SerializeToString())
    assert latest(sim, "temperature,humidity", name="Proto-1") == {"temperature": 21.5, "humidity": 40.0}
    d.publish("v2/t/j", '{"json":1}')  # the /j family is JSON whatever the profile says
    d.c.publish("v1/devices/me/attributes", b"\x0f", qos=1)  # not the schema's bytes: closed without PUBACK
    assert d.gone.wait(WAIT)
    d = dev(user="PTOK")
    d.publish("v1/devices/me/attributes/request/1", B("transportapi.AttributesRequest")().SerializeToString())
    resp = B("transport.GetAttributeResponseMsg").FromString(d.expect("v1/devices/me/attributes/response/1").payload)
    assert list(resp.clientAttributeList) == [] and list(resp.sharedAttributeList) == []
    assert d.subscribe("v1/devices/me/rpc/request/+") == [1]
    pending = _rest_rpc(sim, "twoway", {"method": "setGpio", "params": {"pin": 4, "value": 1}, "timeout": 5000},
                        name="Proto-1")
    m = d.msgs.get(timeout=WAIT)
    req = rpc_request.FromString(m.payload)
    assert (req.method, req.params.pin, req.params.value) == ("setGpio", 4, 1)
    d.publish(m.topic.replace("request", "response"), rpc_response(payload='{"ok":true}').SerializeToString())
    assert pending.get(timeout=WAIT)[0] == 200
    assert latest(sim, "json", name="Proto-1") == {"json": 1}


def test_coap_profile_refused_with_0x03(sim, dev, tmp_path):
    profile = sim.rest.post("/api/deviceProfile", {"name": "coap-only", "profileData": {
        "transportConfiguration": {"type": "COAP"}}})
    sim.rest.post("/api/device", {"name": "Coap-1", "deviceProfileId": profile["id"]}, accessToken="CTOK")
    assert dev(user="CTOK").code == 3  # a profile of another transport type (§2.2)


def test_x509_over_tls(tbsim_factory, tmp_path):
    tls_dir = str(tmp_path / "tls")
    good, other = tls.client(tls_dir, "dev-x509"), tls.client(tls_dir, "unknown")
    sim = tbsim_factory("--mqtts-port", "0", "--tls-dir", tls_dir, "--x509-device", "X-1=" + good["cert"])
    port = mqtt_port(sim, "MQTTS mqtts")
    ca = tls_dir + "/ca.pem"
    d = Dev(port, user="ignored", tls_args={"ca_certs": ca, "certfile": good["cert"], "keyfile": good["key"]})
    try:
        assert d.code == 0
        d.publish("v1/devices/me/telemetry", '{"x509":1}')
        assert latest(sim, "x509", name="X-1") == {"x509": 1}
    finally:
        d.close()
    u = Dev(port, user="ignored", tls_args={"ca_certs": ca, "certfile": other["cert"], "keyfile": other["key"]})
    u.close()
    assert u.code == 5  # an unknown certificate: the handshake completes, the CONNECT is refused
    t = Dev(port, user=TOKEN, tls_args={"ca_certs": ca, "cert_reqs": ssl.CERT_REQUIRED})
    t.close()
    assert t.code == 0  # no client certificate: the access token as on the plain port
