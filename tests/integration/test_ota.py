# OTA end to end (issue 4): the reference firmware on the unix port against tbsim, updated from
# an application bundle 1.0.0 to 1.0.1 through ThingsBoard's REST API, in both download modes;
# the failures the device must report (FAILED with fw_error, the running image kept).
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

import mpy
from tbtest import load_tool, wait_until
from test_firmware import Device, write_config

bundle_tool = load_tool("bundle.py")

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


def bundle(tmp_path, version, manifest=None, board="UNIX", **replace):
    return bundle_tool.build(version, board, out=str(tmp_path / ("b-%s-%s.tbb" % (version, board))), manifest=manifest,
                             replace={k.replace("__", "/").replace("_py", ".py"): v for k, v in replace.items()})


def start_device(sim, tmp_path, mode="chunk", heap="384K", cfg=None, **ota):
    """A device on bundle 1.0.0 (installed in its slot as if flashed); cfg: more config keys."""
    sd = tmp_path / "state"
    sd.mkdir(exist_ok=True)
    if not (sd / "ota" / "boot.json").exists():
        bundle_tool.install(bundle(tmp_path, "1.0.0"), str(sd))
    o = dict(OTA_FAST, mode=mode)
    o.update(ota)
    cfg = write_config(tmp_path, port=sim.coap_port, token=sim.token, state_dir=str(sd), ota=o,
                       coap={"ack_timeout_ms": 300, "max_retransmit": 2}, **(cfg or {}))
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
        # the new image is .mpy: it booted without compiling anything of its own
        slot = tmp_path / "state" / "slots" / "b"
        files = [str(p.relative_to(slot)) for p in slot.rglob("*") if p.is_file()]
        assert "firmware/app.mpy" in files and "lib/coap/client.mpy" in files and "board/hal.mpy" in files
        assert [f for f in files if not f.endswith(".mpy")] == ["manifest.json"], files
        assert "fw tb-micropython 1.0.1 applied: an application bundle (.mpy v6) in slot b; rebooting" in out
        if mode == "block2":
            assert "Block2=2/1024" in tbsim.log_text()
        else:
            assert "chunk=2" in tbsim.log_text()
    finally:
        dev.stop()


def _states(sim):
    return [s for s in history(sim, "fw_state") if s not in ("QUEUED", "INITIATED")]


class ChunkGate:
    """tools/udpproxy.py between the device and tbsim that closes when the device asks for chunk
    `at` (or a later one) of a chunked download: the blackout begins at a point of the download,
    not at a time, so a loaded machine cannot finish the download first. everything=True drops
    all traffic both ways while closed (a link loss); False only the chunk requests (the rest of
    the device's traffic goes on). `closed` is set when it closes; open() ends it."""

    def __init__(self, sim, at, everything=True):
        import re

        from udpproxy import UdpProxy

        gate = self
        self.at = at
        self.dark = False
        self.everything = everything
        self.closed = threading.Event()
        chunk = re.compile(rb"chunk=(\d+)$")

        class Proxy(UdpProxy):
            def blacked_out(self):
                return gate.dark and gate.everything

            def _from_client(self, data, addr):
                m = chunk.search(data)
                if m and gate.at is not None and int(m.group(1)) >= gate.at:
                    gate.dark = True
                    gate.closed.set()
                if m and gate.dark and not gate.everything:
                    return  # this chunk request is lost
                UdpProxy._from_client(self, data, addr)

        self.proxy = Proxy(to=("127.0.0.1", sim.coap_port)).start()
        self.port = self.proxy.port

    def open(self):
        self.at = None
        self.dark = False

    def stop(self):
        self.proxy.stop()


def start_behind(gate, sim, tmp_path, **kw):
    """start_device() with the device talking to tbsim through the gate."""
    real = sim.coap_port
    sim.coap_port = gate.port
    try:
        return start_device(sim, tmp_path, **kw)
    finally:
        sim.coap_port = real


def _kept_1_0_0(sim, tmp_path, dev):
    assert latest(sim, "current_fw_version") == "1.0.0"
    boot = json.loads((tmp_path / "state" / "ota" / "boot.json").read_text())
    assert boot == {"slot": "a", "state": "ok"}, boot
    assert "booting again" not in dev.output()
    assert not (tmp_path / "state" / "ota" / "fw.part").exists()


def delete_shared(sim, keys):
    did = sim.rest.device_id(sim.device_name)
    sim.rest.delete("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did, keys=keys)


@pytest.mark.parametrize("case", ["missing", "empty", "not-hex", "too-short", "no-algorithm"])
def test_a_package_that_cannot_be_verified_fails_before_its_download(tbsim, tmp_path, case):
    # ThingsBoard sends fw_checksum (and its algorithm) for every package it stores: without a
    # usable one the image's integrity cannot be known, so it is not even downloaded.
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    assign(tbsim, upload(tbsim, data, "1.0.1"))
    if case == "missing":
        delete_shared(tbsim, "fw_checksum")
    elif case == "no-algorithm":
        delete_shared(tbsim, "fw_checksum_algorithm")
    else:
        set_shared(tbsim, {"fw_checksum": {"empty": "", "not-hex": "zz" * 32, "too-short": "ab" * 16}[case]})
    mark = tbsim.mark()
    dev = start_device(tbsim, tmp_path)
    try:
        assert wait_state(tbsim, "FAILED", 30), dev.output()
        err = latest(tbsim, "fw_error")
        assert "integrity cannot be known" in err, err
        if case in ("not-hex", "too-short"):
            assert "is not a SHA256 checksum (64 hex digits)" in err, err
        assert _states(tbsim) == ["FAILED"]  # no DOWNLOADING, VERIFIED, ...
        assert "chunk=0" not in "\n".join(tbsim.log_text().split("\n")[mark:])
        _kept_1_0_0(tbsim, tmp_path, dev)
    finally:
        dev.stop()


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
        # not tried again while the assignment stays the same: another attribute makes the device
        # look at it again, and it says so
        n = len(_states(tbsim))
        set_shared(tbsim, {"telemetry_interval_ms": 400})
        assert dev.wait_for("fw tb-micropython 1.0.1 failed before; waiting for another assignment", 20), dev.output()
        assert len(_states(tbsim)) == n and _states(tbsim)[-1] == "FAILED"
    finally:
        dev.stop()


@pytest.mark.parametrize("need", [{"version": 5}, {"version": 6, "sub_version": 3, "arch": 4, "march": "armv6m"}])
def test_bundle_the_device_cannot_load_fails_before_touching_a_slot(tbsim, tmp_path, need):
    # A bundle of .mpy from another MicroPython (or native code for another chip): refused as soon
    # as its manifest has arrived, from what the device's own MicroPython says it loads.
    data = open(bundle(tmp_path, "1.0.1", manifest={"mpy": need}), "rb").read()
    dev = start_device(tbsim, tmp_path, chunk_size=512)
    try:
        assign(tbsim, upload(tbsim, data, "1.0.1"))
        assert wait_state(tbsim, "FAILED", 30), dev.output()
        err = latest(tbsim, "fw_error")
        want = "native code for armv6m" if "arch" in need else "holds .mpy v5, this MicroPython loads v6"
        assert "cannot load the bundle" in err and want in err, err
        assert "UPDATING" not in _states(tbsim)
        assert int(latest(tbsim, "fw_progress")) < 100  # the rest was never downloaded
        assert not (tmp_path / "state" / "slots" / "b").exists()
        _kept_1_0_0(tbsim, tmp_path, dev)
    finally:
        dev.stop()


# ---- ESP32 (issue 13): the reference firmware with the ESP32_GENERIC board on the unix port, over
# the doubles of machine, network, ntptime and esp32 (tests/boards/fakes); esp32.Partition is
# tests/unit/esp32_double's, its flash kept in files so that a reset is a boot (the double's
# bootloader picks the partition to run, with app rollback).
class Esp32Device(Device):
    def __init__(self, config, tmp_path, ota, heap="384K"):
        self.flash = tmp_path / "flash"
        self.flash.mkdir(exist_ok=True)
        path = ":".join(os.path.join(mpy.ROOT, p) for p in (
            "tests/boards/fakes", "tests/unit", "lib", "firmware", "boards/ESP32_GENERIC", "boards/common")) + ":.frozen"
        # tools/run-device's loop: 75 is the board's reset (the fake machine.reset())
        loop = ('while :; do "$MP" -X heapsize=%s firmware/main.py "$1"; rc=$?; [ $rc = 75 ] || exit $rc; '
                'echo "run-device: reset, booting again"; done' % heap)
        env = dict(os.environ, MICROPYPATH=path, MP=mpy.MICROPYTHON, ESP32_FLASH=str(self.flash),
                   ESP32_OTA="1" if ota else "0", ESP32_APP_SIZE="16384")
        self.proc = subprocess.Popen(["bash", "-c", loop, "esp32", config], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env, cwd=mpy.ROOT,
                                     start_new_session=True)
        self.lines = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # the device stops like Ctrl-C
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._t.join(timeout=2)
        return self.proc.returncode

    def flash_state(self):
        return json.loads((self.flash / "flash.json").read_text())


def start_esp32(sim, tmp_path, ota, **more):
    sd = tmp_path / "state"
    sd.mkdir()
    bundle_tool.install(bundle(tmp_path, "1.0.0", board="ESP32_GENERIC"), str(sd))
    cfg = write_config(tmp_path, port=sim.coap_port, token=sim.token, state_dir=str(sd), ota=dict(OTA_FAST, **more),
                       coap={"ack_timeout_ms": 300, "max_retransmit": 2}, wifi={"ssid": "lab", "password": "pw"})
    dev = Esp32Device(cfg, tmp_path, ota)
    assert wait_until(lambda: latest(sim, "current_fw_version") == "1.0.0", 15, 0.1), dev.output()
    return dev


def test_esp32_on_stock_micropython_updates_from_a_bundle(tbsim, tmp_path):
    # Stock MicroPython: no OTA partitions; the bundle goes to a file-system slot, on trial, confirmed. A stock
    # ESP32-WROOM has less heap beside the app than an update needs: the download runs in a boot of its own
    # (Wi-Fi joined, no app), as beside_app_kb makes it here.
    data = open(bundle(tmp_path, "1.0.1", board="ESP32_GENERIC"), "rb").read()
    dev = start_esp32(tbsim, tmp_path, ota=False, beside_app_kb=100000)
    try:
        assert "esp32: running factory" in dev.output()
        assign(tbsim, upload(tbsim, data, "1.0.1"))
        assert wait_state(tbsim, "UPDATED", 60), dev.output()
        assert latest(tbsim, "current_fw_version") == "1.0.1"
        out = dev.output()
        assert "applied: an application bundle (.mpy v6) in slot b; rebooting" in out
        assert out.index("applied: an application bundle") > out.index("a boot of its own for the update")
        assert out.index("fw 1.0.1 confirmed") > out.index("booting again")
        assert json.loads((tmp_path / "state" / "ota" / "boot.json").read_text()) == {"slot": "b", "state": "ok"}
        assert (tmp_path / "state" / "slots" / "b" / "board" / "wifihal.mpy").exists()  # the ESP32 board's
        assert dev.flash_state()["erases"] == 0  # the flash partitions were never touched
    finally:
        dev.stop()


def test_esp32_image_goes_to_the_ota_partition(tbsim, tmp_path):
    # A MicroPython image (a custom build with the app frozen in) into the next OTA partition; the
    # new image boots on trial (the double's bootloader: pending verify) running its own code, not
    # a slot, and confirms (mark_app_valid_cancel_rollback). Its "own code" is the factory firmware
    # on MICROPYPATH (firmware/, boards/ESP32_GENERIC), whose version.py the package names.
    from test_otaparts import app_image

    factory = open(os.path.join(mpy.ROOT, "firmware", "version.py")).read().split('FW_VERSION = "')[1].split('"')[0]
    image = app_image(10000, project=b"micropython", version=b"v1.28.0-tb")
    dev = start_esp32(tbsim, tmp_path, ota=True)
    try:
        assign(tbsim, upload(tbsim, image, factory))
        assert wait_state(tbsim, "UPDATED", 60), dev.output()
        assert latest(tbsim, "current_fw_version") == factory
        out = dev.output()
        assert ("applied: an ESP32 app image (micropython v1.28.0-tb) in partition ota_0; rebooting" in out), out
        assert "esp32: running ota_0" in out
        assert out.index("fw %s confirmed" % factory) > out.index("esp32: running ota_0")
        flash = dev.flash_state()
        assert flash["boot"] == "ota_0" and flash["states"]["ota_0"] == "valid" and flash["valid_marks"] == 1
        assert (dev.flash / "ota_0.bin").read_bytes()[: len(image)] == image
        assert json.loads((tmp_path / "state" / "ota" / "boot.json").read_text()) == {"slot": None, "state": "ok"}
        assert not (tmp_path / "state" / "slots" / "b").exists()
    finally:
        dev.stop()


def test_unassigned_mid_way_cancels(tbsim, tmp_path):
    # The download is held at chunk 20 (its requests lost, the rest of the traffic flowing) while
    # the package is unassigned: it cannot have finished first, however slow the machine.
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    gate = ChunkGate(tbsim, 20, everything=False)
    try:
        dev = start_behind(gate, tbsim, tmp_path, chunk_size=128)
        try:
            assign(tbsim, upload(tbsim, data, "1.0.1"))
            assert gate.closed.wait(30), dev.output()
            assign(tbsim, None)
            assert wait_state(tbsim, "FAILED", 20), dev.output()
            assert "unassigned" in latest(tbsim, "fw_error")
            assert int(latest(tbsim, "fw_progress")) < 100
            _kept_1_0_0(tbsim, tmp_path, dev)
        finally:
            dev.stop()
    finally:
        gate.stop()


def _kill_micropython(dev):
    # The device loses power: SIGKILL to the unix port process (not run-device, which would stop cleanly).
    import signal
    import subprocess

    pids = subprocess.run(["pgrep", "-P", str(dev.proc.pid)], capture_output=True, text=True).stdout.split()
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    dev.proc.wait(timeout=10)


def test_too_little_heap_beside_the_app_updates_in_a_boot_of_its_own(tbsim, tmp_path):
    # Less free heap than ota.beside_app_kb: the app records the download and reboots; that boot loads the
    # link and the OTA modules and not the app (firmware/otaload.update_boot), downloads, applies and
    # reboots into the new image, which confirms it as usual.
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    dev = start_device(tbsim, tmp_path, beside_app_kb=100000)
    try:
        assign(tbsim, upload(tbsim, data, "1.0.1"))
        assert wait_state(tbsim, "UPDATED", 60), dev.output()
        assert latest(tbsim, "current_fw_version") == "1.0.1"
        out = dev.output()
        assert "KB free beside the app, 100000 KB wanted: rebooting to update in a boot of its own" in out
        own = out.index("device: a boot of its own for the update under way")
        applied = out.index("fw tb-micropython 1.0.1 applied")
        assert own < applied and "reporting every" not in out[own:applied]  # the app did not start there
        assert out.count("a boot of its own for the update") == 1
    finally:
        dev.stop()


def test_an_update_failing_in_its_own_boot_goes_back_to_the_app_once(tbsim, tmp_path):
    # FAILED in the update's boot: the next boot is the app's, which knows that package failed and
    # does not reboot for it again.
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    dev = start_device(tbsim, tmp_path, beside_app_kb=100000)
    try:
        assign(tbsim, upload(tbsim, data, "1.0.1", checksum="0" * 64))
        assert wait_state(tbsim, "FAILED", 60), dev.output()
        assert "checksum mismatch" in latest(tbsim, "fw_error")
        assert wait_until(lambda: "1.0.1 failed before; waiting for another assignment" in dev.output(), 30, 0.1), \
            dev.output()
        out = dev.output()
        assert out.count("a boot of its own for the update") == 1
        assert "reporting every" in out[out.index("a boot of its own"):]
        assert latest(tbsim, "current_fw_version") == "1.0.0"
    finally:
        dev.stop()


def test_the_update_boot_of_an_image_on_trial_is_its_health_check(tbsim, tmp_path):
    # The boot after a firmware update (1.0.1 in slot b, on trial) finds a software download left under way:
    # that boot makes the download alone, and its posts are the new image's health check (it connected and
    # posted), so the image is confirmed there rather than rolled back at the next boot.
    sd = tmp_path / "state"
    sd.mkdir()
    bundle_tool.install(bundle(tmp_path, "1.0.0"), str(sd))
    fw = bundle(tmp_path, "1.0.1")
    bundle_tool.bundle.unpack(fw, str(sd / "slots" / "b"))
    (sd / "ota" / "boot.json").write_text(json.dumps({"slot": "b", "prev": "a", "state": "trial"}))
    assign(tbsim, upload(tbsim, open(fw, "rb").read(), "1.0.1"))
    data = os.urandom(3000)
    assign(tbsim, upload(tbsim, data, "2.0.0", title="sw-x", kind="SOFTWARE"), "softwareId")
    (sd / "ota" / "fw.json").write_text(json.dumps({"stage": "applying", "pkg": {"title": TITLE, "version": "1.0.1"}}))
    (sd / "ota" / "sw.json").write_text(json.dumps({"stage": "download", "offset": 0,
                                                    "pkg": {"title": "sw-x", "version": "2.0.0"}}))
    cfg = write_config(tmp_path, port=tbsim.coap_port, token=tbsim.token, state_dir=str(sd), ota=OTA_FAST,
                       coap={"ack_timeout_ms": 300, "max_retransmit": 2})
    dev = Device(cfg, heap="384K")
    try:
        assert _sw_wait(tbsim, "2.0.0"), dev.output()
        assert (sd / "ota" / "sw.bin").read_bytes() == data
        assert wait_until(lambda: latest(tbsim, "fw_state") == "UPDATED", 30, 0.1), dev.output()
        # then the app's boot (the image kept) reports what runs
        assert wait_until(lambda: latest(tbsim, "current_fw_version") == "1.0.1", 30, 0.1), dev.output()
        out = dev.output()
        assert out.index("fw 1.0.1 confirmed") > out.index("a boot of its own for the update")
        assert json.loads((sd / "ota" / "boot.json").read_text()) == {"slot": "b", "state": "ok"}
    finally:
        dev.stop()


def test_interrupted_download_resumes(tbsim, tmp_path):
    # Power lost mid-download: the device is killed while its request for chunk 80 (byte 20480,
    # past the record saved every 16 KB) is held at the gate, so the kill cannot come too late.
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    gate = ChunkGate(tbsim, 80)
    try:
        dev = start_behind(gate, tbsim, tmp_path, chunk_size=256)
        try:
            assign(tbsim, upload(tbsim, data, "1.0.1", algorithm="MD5"))
            assert gate.closed.wait(30), dev.output()
            _kill_micropython(dev)
            first = dev.output()
        finally:
            dev.stop()
        rec = json.loads((tmp_path / "state" / "ota" / "fw.json").read_text())
        assert rec["stage"] == "download" and rec["offset"] == 16384, rec
        gate.open()
        mark = tbsim.mark()
        dev = Device(str(tmp_path / "config.json"), heap="384K")
        try:
            assert wait_state(tbsim, "UPDATED", 60), first + "\n---\n" + dev.output()
            assert "resuming at byte %d" % rec["offset"] in dev.output()
            # the chunks before the resume point were not asked again
            k = rec["offset"] // 256
            later = tbsim.log_text().split("\n")[mark:]
            assert not any("chunk=%d " % (k - 1) in l or l.endswith("chunk=%d" % (k - 1)) for l in later)
            assert any("chunk=%d " % k in l for l in later)
            assert latest(tbsim, "current_fw_version") == "1.0.1"
        finally:
            dev.stop()
    finally:
        gate.stop()


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
    # A flash that fills up after 3000 bytes (issue 4: "no space left"), or a heap (FULL_HEAP).
    needs_reboot = True

    def open(self, pkg, offset):
        self.n = 0
        return 0

    def write(self, data):
        self.n += len(data)
        if self.n > 3000:
            if FULL_HEAP:
                raise MemoryError("memory allocation failed")
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


@pytest.mark.parametrize("full", ["flash", "heap"])
def test_no_space_left(tbsim, tmp_path, full):
    sd = tmp_path / "state"
    sd.mkdir()
    hal = open(os.path.join(mpy.ROOT, "boards", "UNIX", "hal.py"), "rb").read() + _ENOSPC_HAL.replace(
        b"\nclass _FullSink", b"\nFULL_HEAP = %s\n\n\nclass _FullSink" % (b"True" if full == "heap" else b"False"))
    bundle_tool.install(bundle(tmp_path, "1.0.0", board__hal_py=hal), str(sd))
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    dev = start_device(tbsim, tmp_path)
    try:
        assign(tbsim, upload(tbsim, data, "1.0.1"))
        assert wait_state(tbsim, "FAILED", 20), dev.output()
        assert ("no space left" if full == "flash" else "out of memory") in latest(tbsim, "fw_error")
        assert latest(tbsim, "current_fw_version") == "1.0.0"
        assert "Task exception" not in dev.output()
    finally:
        dev.stop()


def test_no_heap_for_the_ota_modules(tbsim, tmp_path):
    # A board whose heap cannot take the OTA modules when an update comes: the import fails with
    # MemoryError, which the device reports rather than losing the task that loads them.
    sd = tmp_path / "state"
    sd.mkdir()
    bundle_tool.install(bundle(tmp_path, "1.0.0", lib__tbdevice__ota_py=b"raise MemoryError('test')\n"), str(sd))
    data = open(bundle(tmp_path, "1.0.1"), "rb").read()
    dev = start_device(tbsim, tmp_path)
    try:
        assign(tbsim, upload(tbsim, data, "1.0.1"))
        assert wait_state(tbsim, "FAILED", 20), dev.output()
        assert "out of memory loading the OTA modules" in latest(tbsim, "fw_error")
        assert "Task exception" not in dev.output() and latest(tbsim, "current_fw_version") == "1.0.0"
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
        # a URL package without a checksum (ThingsBoard allows it): taken as it is, and the log says so
        data = os.urandom(2000)
        (tmp_path / "pkg.bin").write_bytes(data)
        assign(tbsim, url_package(tbsim, url, "3.0.2", "sw-data"), "softwareId")
        assert _sw_wait(tbsim, "3.0.2"), dev.output()
        assert (tmp_path / "state" / "ota" / "sw.bin").read_bytes() == data
        assert "sw: a URL package without a checksum: nothing to verify against" in dev.output()
        # a URL package whose bytes do not match its checksum
        assign(tbsim, url_package(tbsim, url, "3.0.1", "sw-data", "SHA256", "ab" * 32), "softwareId")
        assert wait_until(lambda: latest(tbsim, "sw_state") == "FAILED", 20, 0.05), dev.output()
        assert "checksum mismatch" in latest(tbsim, "sw_error")
        assert latest(tbsim, "current_fw_version") == "1.0.0"  # the firmware was never touched
    finally:
        srv.shutdown()
        dev.stop()


def _hostname_not_in_the_certificate():
    # a name of this machine that resolves to tbsim's 127.0.0.1 but that its certificate does not name
    import socket

    name = socket.gethostname()
    try:
        return name if name not in ("localhost",) and socket.gethostbyname(name) == "127.0.0.1" else None
    except OSError:
        return None


@pytest.mark.parametrize("case", ["ota.ca", "tls.ca", "foreign-ca", "no-ca", "verify-false", "host-name"])
def test_https_package_url_verifies_its_server(tbsim_factory, tmp_path, case):
    # fw_url/sw_url over HTTPS (tbsim's, with its test CA): the server must chain to the CA of the
    # config ("ota.ca", else "tls.ca") and have the URL's host name; without a CA the package fails
    # saying how to configure one, and only "ota": {"verify": false} takes the server unchecked.
    # The bytes come from a package stored for another device, through tbsim's HTTPS device API.
    from tbsim.ota import checksum
    from tbsim.tls import ensure

    host = "localhost"
    if case == "host-name":
        host = _hostname_not_in_the_certificate()
        if host is None:
            pytest.skip("no name of this machine resolves to 127.0.0.1")
    sim = tbsim_factory("--https-port", "0", "--tls-dir", str(tmp_path / "tls"),
                        devices=(("Thermo-1", "A1_TEST_TOKEN"), ("Store", "STORE_TOKEN")))
    data = os.urandom(6000)
    # The bytes, stored for the device "Store" under a title of their own (ThingsBoard keeps one package per
    # title and version), served over HTTPS; the URL package the device gets is "sw-tls" 7.0.0.
    stored = upload(sim, data, "7.0.0", title="sw-store", kind="SOFTWARE")
    store = sim.rest.get("/api/tenant/devices", deviceName="Store")
    store["softwareId"] = stored["id"]
    sim.rest.post("/api/device", store)
    url = "https://%s:%d/api/v1/STORE_TOKEN/software?title=sw-store&version=7.0.0" % (host, sim.https_port)
    ca, cfg, ota = sim.tls_ca, {}, {}
    if case == "tls.ca":
        cfg["tls"] = {"ca": ca}
    elif case == "foreign-ca":
        ota["ca"] = ensure(str(tmp_path / "foreign"))["ca"]
    elif case == "verify-false":
        ota["verify"] = False
    elif case != "no-ca":
        ota["ca"] = ca
    dev = start_device(sim, tmp_path, cfg=cfg, **ota)
    try:
        mark = sim.mark()
        assign(sim, url_package(sim, url, "7.0.0", "sw-tls", "SHA256", checksum("SHA256", data)), "softwareId")
        if case in ("ota.ca", "tls.ca", "verify-false"):
            assert _sw_wait(sim, "7.0.0"), dev.output()
            assert (tmp_path / "state" / "ota" / "sw.bin").read_bytes() == data
            assert " GET software?title=sw-store&version=7.0.0 Store -> 200" in sim.log_text()  # over HTTPS
            return
        assert wait_until(lambda: latest(sim, "sw_state") == "FAILED", 60, 0.05), dev.output()
        err = latest(sim, "sw_error")
        want = {"foreign-ca": "TLS to localhost: The certificate is not correctly signed by the trusted CA",
                "no-ca": 'no CA to verify its server with: set "ota": {"ca": "<CA file>"} (or "tls": {"ca": ...})',
                "host-name": "TLS to %s: The certificate Common Name (CN) does not match" % host}[case]
        assert want in err, err
        if case == "no-ca":
            assert '"ota": {"verify": false} skips the check' in err
            assert " GET software?title=sw-tls" not in "\n".join(sim.log_text().split("\n")[mark:])  # never asked
            assert [s for s in history(sim, "sw_state") if s not in ("QUEUED", "INITIATED")] == ["FAILED"]
        assert not (tmp_path / "state" / "ota" / "sw.bin").exists()
    finally:
        dev.stop()


@pytest.mark.parametrize("where", ["beside the app", "own boot"])
def test_http_transport_downloads_through_the_firmware_route(tbsim, tmp_path, where):
    # own boot: a software package in the update's own boot (which then reboots into the app)
    sd = tmp_path / "state"
    sd.mkdir()
    ota = dict(OTA_FAST, chunk_size=512, beside_app_kb=100000 if where == "own boot" else 0)
    cfg = write_config(tmp_path, transport="http", port=tbsim.http_port, token=tbsim.token, state_dir=str(sd), ota=ota)
    dev = Device(cfg, heap="384K")
    try:
        assert wait_until(lambda: latest(tbsim, "current_fw_version") is not None, 15, 0.1), dev.output()
        data = os.urandom(4000)
        assign(tbsim, upload(tbsim, data, "4.0.0", title="sw-http", algorithm="SHA512", kind="SOFTWARE"),
               "softwareId")
        assert _sw_wait(tbsim, "4.0.0"), dev.output()
        assert (sd / "ota" / "sw.bin").read_bytes() == data
        assert "software?title=sw-http&version=4.0.0&size=512&chunk=7" in tbsim.log_text()
        assert ("a boot of its own for the update" in dev.output()) == (where == "own boot"), dev.output()
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
    # A blackout (everything lost, both ways, through tools/udpproxy.py) that begins when the device
    # asks for chunk 100 of a chunked download and ends once the device has said it is retrying:
    # the requests time out, the link is retried, and the download goes on from the chunk it was
    # at (chunk 0 only once). Driven by the download's own progress, not by time.
    gate = ChunkGate(tbsim, 100)
    try:
        dev = start_behind(gate, tbsim, tmp_path, chunk_size=256, timeout_ms=1000)
        try:
            data = os.urandom(120000)
            assign(tbsim, upload(tbsim, data, "6.0.0", title="sw-loss", algorithm="SHA384", kind="SOFTWARE"),
                   "softwareId")
            assert gate.closed.wait(30), dev.output()
            assert dev.wait_for("; retrying", 30), dev.output()
            gate.open()
            assert _sw_wait(tbsim, "6.0.0", 60), dev.output()
            assert (tmp_path / "state" / "ota" / "sw.bin").read_bytes() == data
            assert "sw at byte 25600: " in dev.output() and "resuming" not in dev.output()
            chunk0 = [l for l in tbsim.log_text().split("\n") if "sw-loss" in l and "chunk=0 " in l]
            assert len(chunk0) == 1, chunk0
        finally:
            dev.stop()
    finally:
        gate.stop()


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
