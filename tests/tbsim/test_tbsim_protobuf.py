"""tbsim with a PROTOBUF device profile (spec §11), driven in-process by aiocoap with Google's protobuf messages:
the profile's schemas for telemetry, attributes and server-side RPC, the built-in messages for the rest,
Content-Format 42, and the REST shape of such a profile."""

import asyncio
import io
import json

import aiocoap
from aiocoap.numbers import Code

from tbsim import protoschema
from tbsim.server import TbSim

RPC_SCHEMA = """syntax = "proto3";
package rpc;
message RpcRequestMsg {
  optional string method = 1;
  optional int32 requestId = 2;
  Params params = 3;
  message Params { int32 pin = 1; int32 value = 2; }
}"""
TELEMETRY = protoschema.profile_message(protoschema.default_schema("telemetry"))
ATTRIBUTES = protoschema.profile_message(protoschema.default_schema("attributes"))
RPC_REQUEST = protoschema.profile_message(RPC_SCHEMA)
RPC_RESPONSE = protoschema.profile_message(protoschema.default_schema("rpc_response"))
B = protoschema.builtin


def _run(body):
    async def main():
        log = io.StringIO()
        sim = TbSim(coap_port=0, http_port=0, db=":memory:", devices=[("Json-1", "JTOK")], log_stream=log,
                    profiles=[("Prov", "PKEY", "PSECRET")], protobuf_devices=[("Proto-1", "PTOK")],
                    protobuf_schemas={"rpc_request": RPC_SCHEMA}, rpc_ack_timeout=2.0)
        await sim.start()
        ctx = await aiocoap.Context.create_client_context()
        try:
            await body(sim, ctx, "coap://127.0.0.1:%d/api/v1/" % sim.coap_port)
        finally:
            await ctx.shutdown()
            await sim.stop()

    asyncio.run(main())


async def _req(ctx, code, uri, payload=b"", **kw):
    return await ctx.request(aiocoap.Message(mtype=aiocoap.NON, code=code, uri=uri, payload=payload, **kw)).response


def test_uplinks_by_profile_schema_and_builtins():
    async def body(sim, ctx, base):
        dev = sim.store.device_by_name("Proto-1")
        r = await _req(ctx, Code.POST, base + "PTOK/telemetry",
                       TELEMETRY(temperature=21.5, humidity=40.0, innerObject={"key4": 7}).SerializeToString())
        assert r.code == Code.CREATED
        latest = sim.store.latest(dev["id"])
        assert latest["temperature"][0]["vtype"] == "DOUBLE" and latest["temperature"][0]["v"] == "21.5"
        # innerObject printed with its defaults (JsonFormat includingDefaultValueFields): a JSON value
        assert json.loads(latest["innerObject"][0]["v"]) == {"key4": 7}
        for bad in (b"\x0f", b'{"temperature":1}'):  # malformed bytes; JSON to a protobuf profile (spec §11.1)
            assert (await _req(ctx, Code.POST, base + "PTOK/telemetry", bad)).code == Code.BAD_REQUEST
        r = await _req(ctx, Code.POST, base + "PTOK/attributes", ATTRIBUTES(firmwareVersion="v1.2").SerializeToString())
        assert r.code == Code.CREATED
        sim.core.save_attributes(dev["id"], "SHARED_SCOPE", [("n", "LONG", "5"), ("s", "STRING", "123")])
        r = await _req(ctx, Code.GET, base + "PTOK/attributes?clientKeys=firmwareVersion&sharedKeys=n,s")
        assert r.code == Code.CONTENT and r.opt.content_format == 42
        msg = B("transport.GetAttributeResponseMsg").FromString(r.payload)
        assert [(t.kv.key, t.kv.string_v) for t in msg.clientAttributeList] == [("firmwareVersion", "v1.2")]
        shared = {t.kv.key: (t.kv.type, t.kv.long_v, t.kv.string_v) for t in msg.sharedAttributeList}
        assert shared == {"n": (1, 5, ""), "s": (3, 0, "123")}
        # client-side RPC, claim, provisioning by the built-in messages
        r = await _req(ctx, Code.POST, base + "PTOK/rpc",
                       B("transportapi.RpcRequest")(method="echo", params='{"a":1}').SerializeToString())
        assert r.code == Code.CONTENT and r.opt.content_format == 42
        assert json.loads(B("transport.ToServerRpcResponseMsg").FromString(r.payload).payload) == {"a": 1}
        r = await _req(ctx, Code.POST, base + "PTOK/claim",
                       B("transportapi.ClaimDevice")(secretKey="s3", durationMs=5000).SerializeToString())
        assert r.code == Code.CREATED and sim.store.claim(dev["id"])["secret_key"] == "s3"
        req = B("transport.ProvisionDeviceRequestMsg")(deviceName="pb-prov-1", provisionDeviceCredentialsMsg={
            "provisionDeviceKey": "PKEY", "provisionDeviceSecret": "PSECRET"})
        r = await _req(ctx, Code.POST, base + "provision", req.SerializeToString())
        got = B("transport.ProvisionDeviceResponseMsg").FromString(r.payload)
        assert r.code == Code.CREATED and r.opt.content_format is None and got.status == 1 and got.credentialsValue
        req.provisionDeviceCredentialsMsg.provisionDeviceSecret = "wrong"
        r = await _req(ctx, Code.POST, base + "provision", req.SerializeToString())
        assert r.code == Code.BAD_REQUEST and B("transport.ProvisionDeviceResponseMsg").FromString(r.payload).status == 2

    _run(body)


def test_downlinks_attribute_updates_and_rpc():
    async def body(sim, ctx, base):
        dev = sim.store.device_by_name("Proto-1")
        attrs = ctx.request(aiocoap.Message(mtype=aiocoap.NON, code=Code.GET, uri=base + "PTOK/attributes",
                                            observe=0))
        first = await attrs.response
        assert first.code == Code.CONTENT and first.payload == b"" and first.opt.content_format == 42
        sim.core.save_attributes(dev["id"], "SHARED_SCOPE", [("interval", "LONG", "500")])
        sim.core.delete_attributes(dev["id"], "SHARED_SCOPE", ["interval"])
        it = attrs.observation.__aiter__()
        upd = B("transport.AttributeUpdateNotificationMsg").FromString((await asyncio.wait_for(it.__anext__(), 10)).payload)
        assert [(t.kv.key, t.kv.long_v) for t in upd.sharedUpdated] == [("interval", 500)]
        upd = B("transport.AttributeUpdateNotificationMsg").FromString((await asyncio.wait_for(it.__anext__(), 10)).payload)
        assert list(upd.sharedDeleted) == ["interval"]

        rpc = ctx.request(aiocoap.Message(mtype=aiocoap.NON, code=Code.GET, uri=base + "PTOK/rpc", observe=0))
        assert (await rpc.response).code == Code.VALID
        call = asyncio.ensure_future(sim.rpc.call(dev, "setGpio", {"pin": 2, "value": 1}, False, 5000))
        note = await asyncio.wait_for(rpc.observation.__aiter__().__anext__(), 10)
        assert note.opt.content_format == 42
        req = RPC_REQUEST.FromString(note.payload)
        assert (req.method, req.params.pin, req.params.value) == ("setGpio", 2, 1)
        r = await _req(ctx, Code.POST, base + "PTOK/rpc/%d" % req.requestId,
                       RPC_RESPONSE(payload='{"pin":2,"value":1}').SerializeToString())
        assert r.code == Code.CREATED
        rec = await call
        assert json.loads(rec["response"]) == {"payload": '{"pin":2,"value":1}'}  # spec §11.1
        # params that do not fit the schema: an error reply, and the RPC subscription is cancelled (spec §11.3)
        rec = await sim.rpc.call(dev, "setGpio", "not-an-object", False, 5000)
        assert rec["status"] == "FAILED" and sim.observe.get(dev["id"], "rpc") is None

    _run(body)


def test_rest_profile_shape_and_schema_validation():
    async def body(sim, ctx, base):
        import aiohttp

        url = "http://127.0.0.1:%d" % sim.http_port
        async with aiohttp.ClientSession() as http:
            login = await (await http.post(url + "/api/auth/login", json={
                "username": "tenant@thingsboard.org", "password": "tenant"})).json()
            hdr = {"X-Authorization": "Bearer " + login["token"]}

            def profile(schema):
                return {"name": "pb-%d" % len(schema), "profileData": {"transportConfiguration": {
                    "type": "COAP", "coapDeviceTypeConfiguration": {
                        "coapDeviceType": "DEFAULT", "transportPayloadTypeConfiguration": {
                            "transportPayloadType": "PROTOBUF", "deviceTelemetryProtoSchema": schema}}}}}

            r = await http.post(url + "/api/deviceProfile", json=profile("message {"), headers=hdr)
            assert r.status == 400
            schema = 'syntax = "proto3"; message M { int64 big = 1; }'
            r = await http.post(url + "/api/deviceProfile", json=profile(schema), headers=hdr)
            assert r.status == 200
            p = await r.json()
            t = p["profileData"]["transportConfiguration"]["coapDeviceTypeConfiguration"]
            assert t["transportPayloadTypeConfiguration"]["deviceTelemetryProtoSchema"] == schema
            r = await http.post(url + "/api/device", json={"name": "pb-rest", "deviceProfileId": p["id"]},
                                params={"accessToken": "RTOK"}, headers=hdr)
            assert r.status == 200
        msg = protoschema.profile_message(schema)(big=2**40)
        assert (await _req(ctx, Code.POST, base + "RTOK/telemetry", msg.SerializeToString())).code == Code.CREATED
        row = sim.store.latest(sim.store.device_by_name("pb-rest")["id"])["big"][0]
        assert (row["vtype"], row["v"]) == ("LONG", str(2**40))  # int64 printed as a string, cast back (§11.1)

    _run(body)
