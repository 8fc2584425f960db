"""The heap ceilings of issue 13 on the 32-bit unix port (.venv/bin/micropython32: a board's object and
GC block sizes), for the firmware as `make build BOARD=UNIX` lays it out (plain .mpy, what `make deploy`
copies to a board), against tbsim through tools/min-heap (docs/memory.md). Each test is one run of
tools/min-heap at the ceiling, which waits on the device's output and tbsim's REST API.

A stock ESP32-WROOM leaves an application about 105 KB: within issue 13's 64 KB the app would leave its user
40 KB (today's 84 KB, with a Wi-Fi board's hal, leave about 18)."""
import os
import subprocess
import sys

import pytest

from tbtest import load_tool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIN_HEAP = [sys.executable, os.path.join(ROOT, "tools", "min-heap")]
BOARD = [sys.executable, os.path.join(ROOT, "tools", "board")]

# Issue 13's goals, KB of heap on the 32-bit build: 64 for the reference app (CoAP, JSON, Observe for RPC and
# attributes, store and forward, OTA idle; aim 48), 32 for the library alone (tbdevice.device.Device connects and
# sends 50 telemetry messages), 72 for the app plus a firmware update end to end (downloaded, verified, applied,
# rebooted into, confirmed). docs/memory.md says how far each figure is from its goal.
# The ceilings held here: today's figures and a few KB, so that nothing grows unnoticed while the goals are
# missed (measured with tools/min-heap and make bench on 2026-12-06, session 7: app 84, lib 54-55, app+OTA 99,
# once firmware/start.py collects every 4 KB allocated (gc.threshold) and the boot after an update confirms
# without the download's code; app+OTA was 112-117 before, and a run's figure varies by 1-3 KB with the moment
# of its allocations, the update's more: one full `make test` once failed it 8 KB above its bisected figure, so
# its ceiling keeps 10 KB; app+OTA 95-96 in session 8, once that boot confirms without the download's sinks;
# 97 in session 9, with the link-down message and the receive task's repair of a failed wait; 94 in session 10,
# once the confirming boot posts UPDATED without the OTA code and the manifest's file list is not held;
# session 11: app 84, lib 53, app+OTA 93, with the library compiled -O3, without line numbers; then app 84,
# lib 54, app+OTA 94-95 with what a long outage needs: the queue's heap reserve, tasks that outlive a MemoryError).
# Lower them as the figures come down.
APP_KB = 87
LIB_KB = 56
APP_OTA_KB = 103
# Not a ceiling of the issue: the app from its ROMFS image updating itself (tools/romboot.py, a ROMFS
# bundle) keeps working; KB beside the image, which a board keeps in flash. Measured 76-78 KB before session 7,
# 62 KB after it, 60 KB in session 8 (make bench, 2026-12-06).
ROM_OTA_KB = 70
# The transports and payloads the config loads on demand (issue 13: each has its own figure), so that none
# breaks or grows unnoticed: measured HTTP 72, protobuf 105 (2026-12-06); HTTP 76-77 and protobuf 107 once the update's
# own boot came; HTTP 77 and protobuf 103 in session 7.
OPTIONAL_KB = {"http": 80, "protobuf": 110}
# The figures above run the UNIX board's hal; a Wi-Fi board's (boards/common/wifihal.py) takes more: measured
# 3.3 KB on ESP32_GENERIC and RPI_PICO_W (bench/mp/halprobe.py, session 11), which make bench takes off what
# a board leaves. A ceiling, so that it does not grow unnoticed.
WIFI_HAL_EXTRA_KB = 5
# Far below any of them, the app must fail, and say MemoryError: the heap limit really limits.
TOO_SMALL_KB = 24


@pytest.fixture(scope="module")
def build():
    for what in ("build", "romfs"):  # tools/board directly: `make` would also run `make setup`
        r = subprocess.run(BOARD + [what, "UNIX"], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def min_heap(*args, timeout=180):
    return subprocess.run(MIN_HEAP + list(args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_app_runs_within_its_ceiling(build):
    # telemetry stored, a two-way RPC over Observe answered, a shared attribute update applied
    r = min_heap("app", "--at", str(APP_KB))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr


def test_library_alone_runs_within_its_ceiling(build):
    r = min_heap("lib", "--at", str(LIB_KB))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr


@pytest.mark.parametrize("scenario", sorted(OPTIONAL_KB))
def test_app_with_an_optional_part_runs_within_its_ceiling(build, scenario):
    r = min_heap(scenario, "--at", str(OPTIONAL_KB[scenario]))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr


def test_app_updates_itself_within_its_ceiling(build):
    # then a firmware package assigned through the REST API: downloaded, verified, applied, booted and
    # confirmed (fw_state UPDATED from the new image)
    r = min_heap("ota", "--at", str(APP_OTA_KB))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr


def test_app_from_romfs_updates_itself(build):
    r = min_heap("ota", "--rom", "--at", str(ROM_OTA_KB))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr


def test_the_heap_limit_is_real(build):
    r = min_heap("app", "--at", str(TOO_SMALL_KB))
    assert r.returncode == 1 and "MemoryError" in r.stdout, r.stdout[-3000:] + r.stderr
    # and the user is told what it means and where to look (firmware/start.py)
    assert "device: the app did not fit in this board's" in r.stdout and "docs/memory.md" in r.stdout, r.stdout[-3000:]


def _hal_bytes(board, tmp):
    tool = load_tool("board")
    out = tool.build(board, str(tmp / board))
    r = subprocess.run([os.path.join(ROOT, ".venv", "bin", "micropython32"),
                        os.path.join(ROOT, "bench", "mp", "halprobe.py"), out,
                        os.path.join(ROOT, "tests", "boards", "fakes")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("hal "), r.stdout + r.stderr
    return int(r.stdout.split()[1])


@pytest.mark.parametrize("board", ("ESP32_GENERIC", "RPI_PICO_W"))
def test_a_wifi_boards_hal_takes_little_more_than_the_unix_one(board, tmp_path):
    extra = _hal_bytes(board, tmp_path) - _hal_bytes("UNIX", tmp_path)
    assert 0 < extra <= WIFI_HAL_EXTRA_KB * 1024, extra
