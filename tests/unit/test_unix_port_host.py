# The shared unit tests again, on the real runtime: the MicroPython unix port with a
# board-sized heap.
import pytest

import mpy

SHARED = ["test_message", "test_block", "test_jsonenc", "test_tbdevice", "test_config", "test_httpresponse", "test_checksum", "test_queue", "test_otaparts",
          "test_protobuf", "test_protocodec", "test_bounds", "test_mqttcodec", "test_config_mqtt", "test_forward"]


@pytest.mark.parametrize("module", SHARED)
def test_shared_module_on_unix_port(module):
    r = mpy.run(["tests/mpy_unit.py", module], heap="512K")  # compiling from source needs room; boards run .mpy (their heap: tests/integration/test_memory.py)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout.splitlines()[-1]
