"""The ESP32_GENERIC and RPI_PICO_W HALs run on the unix port against stand-ins for machine,
network, ntptime and esp32 (tests/boards/fakes): Wi-Fi join and its status codes, the port
quirk, NTP time, sensors, pins, the supervisor's probes, watchdog and link rebuild, sleep."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("board", ["ESP32_GENERIC", "RPI_PICO_W"])
def test_wifi_board_hal_on_fakes(board):
    path = ":".join(os.path.join(ROOT, p) for p in ("tests/boards/fakes", "boards/" + board, "boards/common", "lib"))
    r = subprocess.run([os.path.join(ROOT, ".venv", "bin", "micropython"), os.path.join(ROOT, "tests/boards/mpy_hal.py"),
                        board], env=dict(os.environ, MICROPYPATH=path + ":.frozen"), capture_output=True, text=True,
                       timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    lines = [l for l in r.stdout.splitlines() if l.startswith(("ok ", "FAIL "))]
    assert len(lines) >= 14 and all(l.startswith("ok ") for l in lines), out
