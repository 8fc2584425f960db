"""The reference app over MQTT within its heap ceiling on the 32-bit unix port (.venv/bin/micropython32), from
the .mpy files of `make build BOARD=UNIX`, through `tools/min-heap mqtt` (docs/memory.md): telemetry answered
by PUBACKs and stored, a two-way RPC over the RPC subscription answered, a shared attribute update applied; and
the same with an MQTT device profile of payload type PROTOBUF (`tools/min-heap mqtt-protobuf`).
The CoAP app's own ceiling is tests/integration/test_memory.py's: the MQTT modules never load there
(tests/integration/test_mqtt_firmware.py checks sys.modules)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIN_HEAP = [sys.executable, os.path.join(ROOT, "tools", "min-heap")]
BOARD = [sys.executable, os.path.join(ROOT, "tools", "board")]

# Measured with tools/min-heap mqtt on 2026-12-05: 87 KB (the CoAP app: 96); 80 KB on 2026-12-06 (make bench,
# session 7). The ceiling is that and a few KB.
MQTT_KB = 86
# tools/min-heap mqtt-protobuf on 2026-12-06: 99 KB, 98 KB in session 7 (mqtt gave 80): an MQTT PROTOBUF profile.
MQTT_PROTOBUF_KB = 104


@pytest.fixture(scope="module")
def build():
    r = subprocess.run(BOARD + ["build", "UNIX"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_app_over_mqtt_runs_within_its_ceiling(build):
    r = subprocess.run(MIN_HEAP + ["mqtt", "--at", str(MQTT_KB)], capture_output=True, text=True, timeout=180,
                       cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr


def test_app_over_mqtt_with_a_protobuf_profile_runs_within_its_ceiling(build):
    r = subprocess.run(MIN_HEAP + ["mqtt-protobuf", "--at", str(MQTT_PROTOBUF_KB)], capture_output=True, text=True,
                       timeout=180, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
