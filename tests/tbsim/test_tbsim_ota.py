"""OTA (spec §10): package upload and assignment over REST, fw_* shared attributes, CoAP `fw/{token}`
(chunks, sequential Block2, random access), HTTP download."""

import asyncio
import hashlib
import json
import shutil
import subprocess
import urllib.request
import uuid

import aiocoap
import pytest
from aiocoap.numbers import Code

from tbsim.ota import checksum
from tbsim_wire import ACK, CON, RawPeer

TOKEN = "A1_TEST_TOKEN"
IMAGE = bytes(range(256)) * 10 + b"tail-0123456789"  # 2575 bytes: three 1024-byte blocks


def upload(sim, data, title="tb-fw", version="1.1.0", algorithm="SHA256"):
    r = sim.rest
    profile = r.get("/api/tenant/devices", deviceName="Thermo-1")["deviceProfileId"]  # ThingsBoard needs it
    pkg = r.post("/api/otaPackage", {"title": title, "version": version, "type": "FIRMWARE",
                                     "deviceProfileId": profile})
    boundary = uuid.uuid4().hex
    body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"fw.bin\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n" % boundary).encode() + data +
            ("\r\n--%s--\r\n" % boundary).encode())
    req = urllib.request.Request(
        "%s/api/otaPackage/%s?checksumAlgorithm=%s" % (sim.http_url, pkg["id"]["id"], algorithm), data=body,
        method="POST", headers={"Content-Type": "multipart/form-data; boundary=" + boundary,
                                "X-Authorization": "Bearer " + r.jwt})
    with urllib.request.urlopen(req, timeout=10) as resp:
        info = json.loads(resp.read())
    assert info["hasData"] and info["dataSize"] == len(data)
    return info


def assign(sim, info):
    dev = sim.rest.get("/api/tenant/devices", deviceName="Thermo-1")
    dev["firmwareId"] = info["id"]
    return sim.rest.post("/api/device", dev)


def test_checksums_follow_guava():
    assert checksum("CRC32", b"123456789") == "2639f4cb"  # little-endian, spec §10.1
    assert checksum("SHA256", b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_assignment_pushes_fw_attributes_and_coap_chunks(tbsim):
    p = RawPeer(tbsim.coap_port)
    try:
        p.request(Code.GET, "api/v1/%s/attributes" % TOKEN, observe=0, token=b"fw")
        assert p.recv().payload == b"{}"
        info = upload(tbsim, IMAGE)
        assert assign(tbsim, info)["firmwareId"]["id"] == info["id"]["id"]
        n = p.recv()
        p.ack(n)
        attrs = json.loads(n.payload)
        assert attrs == {"fw_title": "tb-fw", "fw_version": "1.1.0", "fw_size": len(IMAGE),
                         "fw_checksum_algorithm": "SHA256", "fw_checksum": hashlib.sha256(IMAGE).hexdigest()}
        did = tbsim.rest.device_id("Thermo-1")
        state = tbsim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys="fw_state")
        assert state["fw_state"][0]["value"] == "INITIATED"
        got = b""
        for chunk in range(3):
            req = p.request(Code.GET, "fw/" + TOKEN, queries=["title=tb-fw", "version=1.1.0", "size=1024",
                                                              "chunk=%d" % chunk])
            ack = p.recv()
            assert (ack.mtype, ack.code, ack.mid) == (ACK, Code.EMPTY, req.mid)  # accepted at once
            r = p.recv()
            assert r.mtype == CON and r.code == Code.CONTENT and r.opt.content_format is None
            p.ack(r)
            got += r.payload
        assert got == IMAGE
        # past the end: the empty ACK and nothing else
        p.request(Code.GET, "fw/" + TOKEN, queries=["size=1024", "chunk=3"])
        assert [m.code for m in p.recv_n(1, extra=0.4)] == [Code.EMPTY]
        assert p.exchange(Code.GET, "fw/" + TOKEN, queries=["title=other"]).code == Code.BAD_REQUEST
        assert p.exchange(Code.GET, "fw/" + TOKEN, queries=["size=x"]).code == Code.INTERNAL_SERVER_ERROR
        assert p.exchange(Code.GET, "fw/" + TOKEN + "/x").code == Code.UNAUTHORIZED
        # unassign: the fw_* attributes are deleted
        dev = tbsim.rest.get("/api/tenant/devices", deviceName="Thermo-1")
        dev["firmwareId"] = None
        tbsim.rest.post("/api/device", dev)
        n = p.recv()
        p.ack(n)
        assert sorted(json.loads(n.payload)["deleted"]) == sorted(attrs)
    finally:
        p.close()


def test_sequential_block2_and_random_access(tbsim):
    assign(tbsim, upload(tbsim, IMAGE))
    p = RawPeer(tbsim.coap_port)
    try:
        req = p.request(Code.GET, "fw/" + TOKEN)
        assert p.recv().code == Code.EMPTY
        b0 = p.recv()
        p.ack(b0)
        assert b0.mtype == CON and b0.opt.block2 == (0, True, 6) and b0.opt.size2 == len(IMAGE)
        data = b0.payload
        for num in (1, 2):  # follow-ups come from the blockwise cache, piggybacked
            req = p.build(Code.GET, "fw/" + TOKEN)
            req.opt.block2 = (num, False, 6)
            p.send(req)
            r = p.recv()
            assert r.mtype == ACK and r.mid == req.mid and r.opt.block2.block_number == num
            assert r.opt.block2.more == (num < 2)
            data += r.payload
        assert data == IMAGE
        # num > 0 with no cached transfer: the whole image with Block2 M=0 (spec §10.2)
        req = p.build(Code.GET, "fw/" + TOKEN)
        req.opt.block2 = (1, False, 6)
        p.send(req)
        assert p.recv().code == Code.EMPTY
        r = p.recv()
        p.ack(r)
        assert r.payload == IMAGE and r.opt.block2 == (1, False, 6)
    finally:
        p.close()


def test_aiocoap_client_downloads_with_block2_and_http_download(tbsim):
    assign(tbsim, upload(tbsim, IMAGE))

    async def fetch():
        ctx = await aiocoap.Context.create_client_context()
        try:
            msg = aiocoap.Message(code=Code.GET, uri="%s/fw/%s" % (tbsim.coap_url, TOKEN))
            return (await asyncio.wait_for(ctx.request(msg).response, 15)).payload
        finally:
            await ctx.shutdown()

    assert asyncio.run(fetch()) == IMAGE
    url = "%s/api/v1/%s/firmware?title=tb-fw&version=1.1.0&size=1000&chunk=2" % (tbsim.http_url, TOKEN)
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.read() == IMAGE[2000:3000]


def test_libcoap_chunk_download(tbsim, tmp_path):
    client = shutil.which("coap-client-notls")
    if client is None:
        pytest.skip("libcoap coap-client not installed")
    assign(tbsim, upload(tbsim, IMAGE))
    out = tmp_path / "part.bin"
    uri = "%s/fw/%s?title=tb-fw&version=1.1.0&size=512&chunk=1" % (tbsim.coap_url, TOKEN)
    subprocess.run([client, "-m", "get", "-o", str(out), uri], timeout=15, check=True)
    assert out.read_bytes() == IMAGE[512:1024]
