# OTA end to end (issue 4): the reference firmware on the unix port against tbsim, updated from
# an application bundle 1.0.0 to 1.0.1 through ThingsBoard's REST API, in both download modes;
# the failures the device must report (FAILED with fw_error, the running image kept).
import importlib.util
import json
import os
import threading
import time
import urllib.request
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

import mpy
from tbtest import wait_until
from test_firmware import Device, write_config

_spec = importlib.util.spec_from_file_location("bundle_tool", os.path.join(mpy.ROOT, "tools", "bundle.py"))
bundle_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bundle_tool)

TITLE = "tb-micropython"
OTA_FAST = {"timeout_ms": 1500, "retry_ms": 200, "health_timeout_ms": 15000}


def profile(sim):
    """The device's profile: ThingsBoard assigns a package only to devices of the profile it was made for."""
    return sim.rest.get("/api/tenant/devices", deviceName=sim.device_name)["deviceProfileId"]


def upload(sim, data, version, title=TITLE, algorithm="SHA256", checksum=None, kind="FIRMWARE"):
    r = sim.rest
    pkg = r.post("/api/otaPackage", {"title": title, "version": version, "type": kind, "deviceProfileId": profile(sim)})
    boundary = uuid.uuid4().hex
    body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"fw.bin\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n" % boundary).encode() + data +
            ("\r\n--%s--\r\n" % boundary).encode())
    q = "checksumAlgorithm=%s" % algorithm + ("&checksum=%s" % checksum if checksum else "")
    req = urllib.request.Request("%s/api/otaPackage/%s?%s" % (sim.http_url, pkg["id"]["id"], q), data=body,
                                 method="POST", headers={"Content-Type": "multipart/form-data; boundary=" + boundary,
                                                         "X-Authorization": "Bearer " + r.jwt})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def url_package(sim, url, version, title=TITLE, algorithm=None, checksum=None, kind="SOFTWARE"):
    body = {"title": title, "version": version, "type": kind, "isURL": True, "url": url,
            "deviceProfileId": profile(sim)}
    if algorithm:
        body.update(checksumAlgorithm=algorithm, checksum=checksum)
    return sim.rest.post("/api/otaPackage", body)


def assign(sim, info, field="firmwareId"):
    dev = sim.rest.get("/api/tenant/devices", deviceName=sim.device_name)
    dev[field] = info["id"] if info else None
    return sim.rest.post("/api/device", dev)


def set_shared(sim, attrs):
    did = sim.rest.device_id(sim.device_name)
    sim.rest.post("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did, attrs)


def history(sim, key):
    did = sim.rest.device_id(sim.device_name)
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys=key, startTs="0",
                       endTs=str(int(time.time() * 1000) + 60000), limit="1000", orderBy="ASC")
    return [p["value"] for p in got.get(key, [])]


def latest(sim, key):
    h = history(sim, key)
    return h[-1] if h else None


def wait_state(sim, state, timeout=40):
    return wait_until(lambda: latest(sim, "fw_state") == state, timeout, 0.1)


def bundle(tmp_path, version, **replace):
    return bundle_tool.build(version, out=str(tmp_path / ("b-%s.tbb" % version)),
                             replace={k.replace("__", "/").replace("_py", ".py"): v for k, v in replace.items()})


def start_device(sim, tmp_path, mode="chunk", heap="384K", **ota):
    """A device on bundle 1.0.0 (installed in its slot as if flashed)."""
    sd = tmp_path / "state"
    sd.mkdir(exist_ok=True)
    if not (sd / "ota" / "boot.json").exists():
        bundle_tool.install(bundle(tmp_path, "1.0.0"), str(sd))
    o = dict(OTA_FAST, mode=mode)
    o.update(ota)
    cfg = write_config(tmp_path, port=sim.coap_port, token=sim.token, state_dir=str(sd), ota=o,
                       coap={"ack_timeout_ms": 300, "max_retransmit": 2})
    dev = Device(cfg, heap=heap)
    assert wait_until(lambda: latest(sim, "current_fw_version") == "1.0.0", 15, 0.1), dev.output()
    return dev


@pytest.mark.parametrize("mode", ["chunk", "block2"])
def test_update_1_0_0_to_1_0_1(tbsim, tmp_path, mode):
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    dev = start_device(tbsim, tmp_path, mode)
    try:
        assign(tbsim, upload(tbsim, data, "1.0.1"))
        ok = wait_state(tbsim, "UPDATED", 60)
        assert ok, dev.output() + "\n" + tbsim.log_text()[-3000:]
        assert latest(tbsim, "current_fw_version") == "1.0.1"
        states = [s for s in history(tbsim, "fw_state") if s not in ("QUEUED", "INITIATED")]
        # each state once and in order (DOWNLOADING repeats with the progress)
        order = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
        assert order == ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"], states
        assert history(tbsim, "fw_progress")[-1] in (100, "100")
        out = dev.output()
        assert "run-device: reset, booting again" in out
        assert out.index("current_fw_version\":\"1.0.1") > out.index("booting again")
        # UPDATED only after the new image posted (its boot report) and confirmed its slot
        assert out.index("fw 1.0.1 confirmed") > out.index("current_fw_version\":\"1.0.1")
        boot = json.loads((tmp_path / "state" / "ota" / "boot.json").read_text())
        assert boot["state"] == "ok" and boot["slot"] == "b"
        if mode == "block2":
            assert "Block2=2/1024" in tbsim.log_text()
        else:
            assert "chunk=2" in tbsim.log_text()
    finally:
        dev.stop()


def _states(sim):
    return [s for s in history(sim, "fw_state") if s not in ("QUEUED", "INITIATED")]


def _kept_1_0_0(sim, tmp_path, dev):
    assert latest(sim, "current_fw_version") == "1.0.0"
    boot = json.loads((tmp_path / "state" / "ota" / "boot.json").read_text())
    assert boot == {"slot": "a", "state": "ok"}, boot
    assert "booting again" not in dev.output()
    assert not (tmp_path / "state" / "ota" / "fw.part").exists()


@pytest.mark.parametrize("case", ["checksum", "size", "truncated", "block2-size"])
def test_bad_package_fails_and_keeps_the_running_image(tbsim, tmp_path, case):
    # Assigned while the device is off: found by the attribute request at boot.
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    if case == "checksum":
        assign(tbsim, upload(tbsim, data, "1.0.1", checksum="00" * 32))
    else:
        assign(tbsim, upload(tbsim, data, "1.0.1"))
        # the server's attribute says another size than the data it serves
        set_shared(tbsim, {"fw_size": len(data) - 100 if case in ("size", "block2-size") else len(data) + 100})
    dev = start_device(tbsim, tmp_path, "block2" if case == "block2-size" else "chunk")
    try:
        assert wait_state(tbsim, "FAILED", 30), dev.output()
        err = latest(tbsim, "fw_error")
        want = {"checksum": "checksum mismatch (SHA256)", "size": "size mismatch", "truncated": "truncated",
                "block2-size": "size mismatch"}[case]
        assert want in err, err
        _kept_1_0_0(tbsim, tmp_path, dev)
        time.sleep(1)  # not tried again while the assignment stays the same
        assert _states(tbsim)[-1] == "FAILED" and "DOWNLOADING" not in _states(tbsim)[-1:]
    finally:
        dev.stop()


def test_unassigned_mid_way_cancels(tbsim, tmp_path):
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    dev = start_device(tbsim, tmp_path, chunk_size=128)
    try:
        assign(tbsim, upload(tbsim, data, "1.0.1"))
        assert wait_until(lambda: int(latest(tbsim, "fw_progress") or 0) >= 10, 20, 0.05), dev.output()
        assign(tbsim, None)
        assert wait_state(tbsim, "FAILED", 10), dev.output()
        assert "unassigned" in latest(tbsim, "fw_error")
        assert int(latest(tbsim, "fw_progress")) < 100
        time.sleep(0.5)
        _kept_1_0_0(tbsim, tmp_path, dev)
    finally:
        dev.stop()


def _kill_micropython(dev):
    # The device loses power: SIGKILL to the unix port process (not run-device, which would stop cleanly).
    import signal
    import subprocess

    pids = subprocess.run(["pgrep", "-P", str(dev.proc.pid)], capture_output=True, text=True).stdout.split()
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    dev.proc.wait(timeout=10)


def test_interrupted_download_resumes(tbsim, tmp_path):
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    dev = start_device(tbsim, tmp_path, chunk_size=256)
    try:
        assign(tbsim, upload(tbsim, data, "1.0.1", algorithm="MD5"))
        assert wait_until(lambda: int(latest(tbsim, "fw_progress") or 0) >= 30, 30, 0.02), dev.output()
        _kill_micropython(dev)
        first = dev.output()
    finally:
        dev.stop()
    rec = json.loads((tmp_path / "state" / "ota" / "fw.json").read_text())
    assert rec["stage"] == "download" and rec["offset"] > 0
    mark = tbsim.mark()
    dev = Device(str(tmp_path / "config.json"), heap="384K")
    try:
        assert wait_state(tbsim, "UPDATED", 60), first + "\n---\n" + dev.output()
        assert "resuming at byte %d" % rec["offset"] in dev.output()
        # the chunks before the resume point were not asked again
        k = rec["offset"] // 256
        later = tbsim.log_text().split("\n")[mark:]
        assert not any("chunk=%d " % (k - 1) in l or l.endswith("chunk=%d" % (k - 1)) for l in later)
        assert latest(tbsim, "current_fw_version") == "1.0.1"
    finally:
        dev.stop()


def test_broken_image_rolls_back(tbsim, tmp_path):
    bad = open(bundle(tmp_path, "1.0.2", firmware__app_py=b"raise ImportError('broken on purpose')\n"), "rb").read()
    dev = start_device(tbsim, tmp_path)
    try:
        assign(tbsim, upload(tbsim, bad, "1.0.2"))
        assert wait_state(tbsim, "FAILED", 40), dev.output()
        assert "rolled back" in latest(tbsim, "fw_error")
        assert "UPDATING" in _states(tbsim)
        out = dev.output()
        assert "broken on purpose" in out and out.count("booting again") == 2
        assert latest(tbsim, "current_fw_version") == "1.0.0"
        boot = json.loads((tmp_path / "state" / "ota" / "boot.json").read_text())
        assert boot == {"slot": "a", "state": "ok", "failed": "b"}
    finally:
        dev.stop()


_ENOSPC_HAL = b'''

class _FullSink:
    # A flash that fills up after 3000 bytes (issue 4: "no space left").
    needs_reboot = True

    def open(self, pkg, offset):
        self.n = 0
        return 0

    def write(self, data):
        self.n += len(data)
        if self.n > 3000:
            raise OSError(28, "ENOSPC")

    def durable(self):
        return 0

    def close(self):
        pass

    def discard(self):
        pass


def _ota_sinks(self):
    return {"fw": _FullSink}


Hal.ota_sinks = _ota_sinks
'''


def test_no_space_left(tbsim, tmp_path):
    sd = tmp_path / "state"
    sd.mkdir()
    hal = open(os.path.join(mpy.ROOT, "boards", "UNIX", "hal.py"), "rb").read() + _ENOSPC_HAL
    bundle_tool.install(bundle(tmp_path, "1.0.0", board__hal_py=hal), str(sd))
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    dev = start_device(tbsim, tmp_path)
    try:
        assign(tbsim, upload(tbsim, data, "1.0.1"))
        assert wait_state(tbsim, "FAILED", 20), dev.output()
        assert "no space left" in latest(tbsim, "fw_error")
        assert latest(tbsim, "current_fw_version") == "1.0.0"
    finally:
        dev.stop()


def _sw_wait(sim, version, timeout=20):
    return wait_until(lambda: latest(sim, "current_sw_version") == version and latest(sim, "sw_state") == "UPDATED",
                      timeout, 0.05)


class _Files(SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def test_every_checksum_algorithm_and_a_url_package_as_software(tbsim, tmp_path):
    # sw_ packages go to a file sink (no reboot): one device takes a package per algorithm.
    from tbsim.ota import checksum

    dev = start_device(tbsim, tmp_path)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Files, directory=str(tmp_path)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for i, alg in enumerate(("MD5", "SHA256", "SHA384", "SHA512", "CRC32", "MURMUR3_32", "MURMUR3_128")):
            data = os.urandom(3000 + i * 517)
            assign(tbsim, upload(tbsim, data, "2.0.%d" % i, title="sw-data", algorithm=alg, kind="SOFTWARE"),
                   "softwareId")
            assert _sw_wait(tbsim, "2.0.%d" % i), (alg, dev.output())
            assert (tmp_path / "state" / "ota" / "sw.bin").read_bytes() == data, alg
        # fw_url: fetched over HTTP from that URL, checked against the checksum given with it
        data = os.urandom(5000)
        (tmp_path / "pkg.bin").write_bytes(data)
        url = "http://127.0.0.1:%d/pkg.bin" % srv.server_address[1]
        assign(tbsim, url_package(tbsim, url, "3.0.0", "sw-data", "MURMUR3_128", checksum("MURMUR3_128", data)),
               "softwareId")
        assert _sw_wait(tbsim, "3.0.0"), dev.output()
        assert (tmp_path / "state" / "ota" / "sw.bin").read_bytes() == data
        # a URL package whose bytes do not match its checksum
        assign(tbsim, url_package(tbsim, url, "3.0.1", "sw-data", "SHA256", "ab" * 32), "softwareId")
        assert wait_until(lambda: latest(tbsim, "sw_state") == "FAILED", 20, 0.05), dev.output()
        assert "checksum mismatch" in latest(tbsim, "sw_error")
        assert latest(tbsim, "current_fw_version") == "1.0.0"  # the firmware was never touched
    finally:
        srv.shutdown()
        dev.stop()


def test_http_transport_downloads_through_the_firmware_route(tbsim, tmp_path):
    sd = tmp_path / "state"
    sd.mkdir()
    cfg = write_config(tmp_path, transport="http", port=tbsim.http_port, token=tbsim.token, state_dir=str(sd),
                       ota=dict(OTA_FAST, chunk_size=512))
    dev = Device(cfg, heap="384K")
    try:
        assert wait_until(lambda: latest(tbsim, "current_fw_version") is not None, 15, 0.1), dev.output()
        data = os.urandom(4000)
        assign(tbsim, upload(tbsim, data, "4.0.0", title="sw-http", algorithm="SHA512", kind="SOFTWARE"),
               "softwareId")
        assert _sw_wait(tbsim, "4.0.0"), dev.output()
        assert (sd / "ota" / "sw.bin").read_bytes() == data
        assert "software?title=sw-http&version=4.0.0&size=512&chunk=7" in tbsim.log_text()
    finally:
        dev.stop()


def test_block2_restarts_when_the_server_forgot_the_transfer(tbsim_factory, tmp_path):
    # The server keeps a Block2 transfer for 0.4 s here (Californium: 300 s) and every datagram
    # takes 10 ms through the proxy: the device finds the transfer gone (the server then sends the
    # whole image in one datagram, cut by the receive buffer), asks block 0 again and goes on.
    from udpproxy import UdpProxy

    sim = tbsim_factory("--blockwise-lifetime", "0.4")
    proxy = UdpProxy(to=("127.0.0.1", sim.coap_port), delay_ms=(10, 10)).start()
    try:
        sim.coap_port = proxy.port
        data = os.urandom(40000)
        dev = start_device(sim, tmp_path, "block2", timeout_ms=1000)
        try:
            assign(sim, upload(sim, data, "5.0.0", title="sw-b2", algorithm="CRC32", kind="SOFTWARE"), "softwareId")
            assert _sw_wait(sim, "5.0.0", 60), dev.output()
            assert (tmp_path / "state" / "ota" / "sw.bin").read_bytes() == data
            lines = sim.log_text().split("\n")
            block0 = [l for l in lines if "?title=sw-b2&version=5.0.0 Thermo-1" in l]
            assert len(block0) >= 2, "\n".join(l for l in lines if "sw-b2" in l)
            # never the same block twice from the cache: each restart jumps to where the download was
            served = [l.split("-> 2.05 Block2=")[1].split("/")[0] for l in lines
                      if "sw-b2" in l and "(piggybacked" in l and "-> 2.05 Block2=" in l]
            assert len(served) > 10 and len(served) == len(set(served)), served
        finally:
            dev.stop()
    finally:
        proxy.stop()


def test_link_loss_mid_download_continues_where_it_was(tbsim, tmp_path):
    # A 3 s blackout through tools/udpproxy.py in the middle of a chunked download: the requests time
    # out, the link is retried, and the download goes on from the chunk it was at (chunk 0 only once).
    from udpproxy import UdpProxy

    proxy = UdpProxy(to=("127.0.0.1", tbsim.coap_port), delay_ms=(1, 1)).start()
    try:
        real = tbsim.coap_port
        tbsim.coap_port = proxy.port
        dev = start_device(tbsim, tmp_path, chunk_size=256, timeout_ms=1000)
        tbsim.coap_port = real
        try:
            data = os.urandom(120000)
            assign(tbsim, upload(tbsim, data, "6.0.0", title="sw-loss", algorithm="SHA384", kind="SOFTWARE"),
                   "softwareId")
            assert wait_until(lambda: int(latest(tbsim, "sw_progress") or 0) >= 20, 30, 0.02), dev.output()
            proxy.blackouts.append((time.monotonic() - proxy.t0, 3.0))
            assert _sw_wait(tbsim, "6.0.0", 60), dev.output()
            assert (tmp_path / "state" / "ota" / "sw.bin").read_bytes() == data
            assert "retrying" in dev.output() and "resuming" not in dev.output()
            chunk0 = [l for l in tbsim.log_text().split("\n") if "sw-loss" in l and "chunk=0 " in l]
            assert len(chunk0) == 1, chunk0
        finally:
            dev.stop()
    finally:
        proxy.stop()


def test_documented_api_firmware_path_when_a_server_serves_it(tbsim_factory, tmp_path):
    # The seed pages' api/v1/{token}/firmware (ota.path "api"): a real ThingsBoard answers
    # 4.00 there over CoAP (spec §10.2), so tbsim serves it only when asked to.
    sim = tbsim_factory("--serve-documented-firmware-path")
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    dev = start_device(sim, tmp_path, "chunk", path="api")
    try:
        assign(sim, upload(sim, data, "1.0.1"))
        assert wait_state(sim, "UPDATED", 60), dev.output() + "\n" + sim.log_text()[-3000:]
        assert latest(sim, "current_fw_version") == "1.0.1"
        assert "GET fw/<token>?title=" in sim.log_text()  # reached through api/v1/<token>/firmware
    finally:
        dev.stop()
