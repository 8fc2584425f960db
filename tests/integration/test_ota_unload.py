# The OTA modules leave the heap when an update is over (issue 13): after a failed update and
# after the new image's confirmation the reference firmware holds no more of OTA than it does
# idle (firmware/otaapp.py). The board's hal in the bundle reports, with every sample, which of
# the OTA modules are imported (telemetry key ota_mods, "-" for none).
import pytest

from tbtest import load_tool, wait_until
from test_firmware import Device, write_config
from test_ota import OTA_FAST, assign, bundle, bundle_tool, history, latest, start_device, upload, wait_state

_WATCHED = ("tbdevice.ota", "tbdevice.otaboot", "tbdevice.otasink", "tbdevice.otafetch", "tbdevice.otablock2",
            "tbdevice.coapota", "tbdevice.bundle", "tbdevice.checksum", "otaload", "otatrial", "bootslot",
            "tbdevice.otastate")

_MODS_HAL = b'''

def _read_sensors_and_mods(self, _read=Hal.read_sensors):
    import sys

    values = _read(self)
    values["ota_mods"] = ",".join(m for m in %r if m in sys.modules) or "-"
    return values


Hal.read_sensors = _read_sensors_and_mods
''' % (_WATCHED,)


# The same for the CoAP stack (telemetry key coap_mods): an HTTP device never loads it, not even
# to download an update (tbdevice.otafetch imports no transport; coapota has CoAP's part).
_COAP_HAL = b'''

def _read_sensors_and_coap(self, _read=Hal.read_sensors):
    import sys

    values = _read(self)
    values["coap_mods"] = ",".join(m for m in sys.modules if m == "coap" or m.startswith("coap.")) or "-"
    return values


Hal.read_sensors = _read_sensors_and_coap
'''


def _hal(extra=_MODS_HAL):
    import os

    import mpy

    with open(os.path.join(mpy.ROOT, "boards", "UNIX", "hal.py"), "rb") as f:
        return f.read() + extra


def _mods_after(sim, n):
    # the ota_mods of the second sample stored after the first n: taken after the event that
    # preceded the call, whatever the sampler's phase
    assert wait_until(lambda: len(history(sim, "ota_mods")) >= n + 2, 20, 0.1)
    return history(sim, "ota_mods")[-1]


@pytest.mark.parametrize("mode", ["chunk", "block2"])
def test_ota_modules_leave_after_a_failed_and_after_a_confirmed_update(tbsim, tmp_path, mode):
    hal = _hal()
    sd = tmp_path / "state"
    sd.mkdir()
    bundle_tool.install(bundle(tmp_path, "1.0.0", board__hal_py=hal), str(sd))
    dev = start_device(tbsim, tmp_path, mode)
    try:
        assert wait_until(lambda: latest(tbsim, "ota_mods") == "-", 15, 0.1), dev.output()
        # a package whose bytes do not match its checksum: downloaded, then FAILED
        bad = open(bundle(tmp_path, "1.0.1", board__hal_py=hal), "rb").read()
        assign(tbsim, upload(tbsim, bad, "1.0.1", checksum="00" * 32))
        assert wait_state(tbsim, "FAILED", 30), dev.output()
        assert "checksum mismatch" in latest(tbsim, "fw_error")
        # (tbdevice.otastate stays after an update beside the app: firmware/otaload.unload_all)
        assert _mods_after(tbsim, len(history(tbsim, "ota_mods"))) in ("-", "tbdevice.otastate"), dev.output()
        # a good one: downloaded, applied, rebooted into, confirmed
        good = open(bundle(tmp_path, "1.0.2", board__hal_py=hal), "rb").read()
        assign(tbsim, upload(tbsim, good, "1.0.2"))
        assert wait_state(tbsim, "UPDATED", 60), dev.output()
        assert latest(tbsim, "current_fw_version") == "1.0.2"
        # the boot that confirmed it holds none of them, otastate included (firmware/otatrial.py)
        assert _mods_after(tbsim, len(history(tbsim, "ota_mods"))) == "-", dev.output()
    finally:
        dev.stop()


def test_an_http_device_downloads_an_update_without_the_coap_stack(tbsim, tmp_path):
    sd = tmp_path / "state"
    sd.mkdir()
    bundle_tool.install(bundle(tmp_path, "1.0.0", board__hal_py=_hal(_COAP_HAL)), str(sd))
    cfg = write_config(tmp_path, transport="http", port=tbsim.http_port, token=tbsim.token, state_dir=str(sd),
                       ota=dict(OTA_FAST, chunk_size=512))
    dev = Device(cfg, heap="384K")
    try:
        assert wait_until(lambda: latest(tbsim, "coap_mods") == "-", 15, 0.1), dev.output()
        assign(tbsim, upload(tbsim, b"x" * 3000, "4.0.0", title="sw-nocoap", algorithm="SHA256", kind="SOFTWARE"),
               "softwareId")
        assert wait_until(lambda: latest(tbsim, "sw_state") == "UPDATED", 30, 0.1), dev.output()
        assert "software?title=sw-nocoap&version=4.0.0&size=512&chunk=5" in tbsim.log_text()
        n = len(history(tbsim, "coap_mods"))
        assert wait_until(lambda: len(history(tbsim, "coap_mods")) >= n + 1, 20, 0.1), dev.output()
        assert set(history(tbsim, "coap_mods")) == {"-"}, history(tbsim, "coap_mods")
    finally:
        dev.stop()


def test_a_second_update_from_romfs_finds_the_boot_shim_again(tmp_path):
    # main.py lets bootslot go after the boot; the next update imports it again to switch slots. From
    # ROMFS (tools/romboot.py), after the first update the slot's image is mounted, which has no boot
    # shim: it comes from beside main.py, as from a board's file system root.
    import json
    import os
    import subprocess
    import sys

    import mpy

    for what in ("build", "romfs"):
        r = subprocess.run([sys.executable, os.path.join(mpy.ROOT, "tools", "board"), what, "UNIX"], cwd=mpy.ROOT,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    mh = load_tool("min-heap")
    sim = mh.Sim("ota")
    try:
        sim.new_device()
        packages = []
        for version in ("2.0.1", "2.0.2"):  # Sim.ota_package() builds tools/min-heap's OTA_VERSION
            mh.OTA_VERSION = version
            sim.pkg = {}
            packages.append((version, sim.ota_package(True)))
        cfg = str(tmp_path / "config.json")
        with open(cfg, "w") as f:
            json.dump(mh.config(sim, "ota", str(tmp_path)), f)
        cmd = [mh.micropython(), "-X", "heapsize=%dK" % (mh.image_kb() + 200), os.path.join(mpy.ROOT, "tools", "romboot.py"),
               mh.IMAGE, os.path.join(mh.BUILD, "main.py"), cfg]
        dev = mh.Device(cmd, dict(os.environ, MICROPYPATH=".frozen"), str(tmp_path))
        try:
            assert dev.wait(lambda: dev.count("-> 2.01") >= 2, 15), dev.output()
            for version, pkg in packages:
                sim.assign(pkg)
                assert dev.wait(lambda: not dev.reading, 40) and dev.proc.returncode == mh.RESET, dev.output()[-3000:]
                dev.boot()
                assert dev.wait(lambda: sim.latest("fw_state") == "UPDATED" and sim.latest("current_fw_version") == version,
                                40, poll=0.25), dev.output()[-3000:]
        finally:
            dev.stop()
    finally:
        sim.stop()
