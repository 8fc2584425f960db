"""The full reference app from build/UNIX (.mpy, as deployed to a board) in a board-sized heap,
against tbsim: telemetry stored and a two-way RPC (Observe) answered (README "Memory").

HEAP_KB is 64-bit unix-port kilobytes: see README for how it maps to a 32-bit board's free heap."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIN_HEAP = [sys.executable, os.path.join(ROOT, "tools", "min-heap")]
HEAP_KB = 224  # ~ 49 + (224 - 49) / 2 = 136 KB on a 32-bit board: inside a Pico W's ~160 KB free heap


@pytest.fixture(scope="module")
def build():
    r = subprocess.run(["make", "-s", "build", "BOARD=UNIX"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_app_from_mpy_runs_in_a_board_sized_heap(build):
    r = subprocess.run(MIN_HEAP + ["--at", str(HEAP_KB)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_heap_limit_is_real(build):
    # Far below what the app needs it must fail (a MemoryError, reported): the flag really limits.
    r = subprocess.run(MIN_HEAP + ["--at", "96"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "MemoryError" in r.stdout, r.stdout + r.stderr
