# The OTA modules leave the heap when an update is over (issue 13): after a failed update and
# after the new image's confirmation the reference firmware holds no more of OTA than it does
# idle (firmware/otaapp.py). The board's hal in the bundle reports, with every sample, which of
# the OTA modules are imported (telemetry key ota_mods, "-" for none).
import pytest

from tbtest import wait_until
from test_ota import assign, bundle, bundle_tool, history, latest, start_device, upload, wait_state

_WATCHED = ("tbdevice.ota", "tbdevice.otaboot", "tbdevice.otasink", "tbdevice.otafetch", "tbdevice.otablock2",
            "tbdevice.coapota", "tbdevice.bundle", "tbdevice.checksum", "otaload", "bootslot")

_MODS_HAL = b'''

def _read_sensors_and_mods(self, _read=Hal.read_sensors):
    import sys

    values = _read(self)
    values["ota_mods"] = ",".join(m for m in %r if m in sys.modules) or "-"
    return values


Hal.read_sensors = _read_sensors_and_mods
''' % (_WATCHED,)


def _hal():
    import os

    import mpy

    with open(os.path.join(mpy.ROOT, "boards", "UNIX", "hal.py"), "rb") as f:
        return f.read() + _MODS_HAL


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
        assert _mods_after(tbsim, len(history(tbsim, "ota_mods"))) == "-", dev.output()
        # a good one: downloaded, applied, rebooted into, confirmed
        good = open(bundle(tmp_path, "1.0.2", board__hal_py=hal), "rb").read()
        assign(tbsim, upload(tbsim, good, "1.0.2"))
        assert wait_state(tbsim, "UPDATED", 60), dev.output()
        assert latest(tbsim, "current_fw_version") == "1.0.2"
        assert _mods_after(tbsim, len(history(tbsim, "ota_mods"))) == "-", dev.output()
    finally:
        dev.stop()
