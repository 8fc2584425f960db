# The heap a board's hal takes (bench/memory.py: hal_extra), on the 32-bit unix port: its module
# and what it imports that the unix hal does not (wifihal on the Wi-Fi boards), and a Hal made
# from a config with Wi-Fi, collected. The port's own modules (network, machine, ntptime, esp32)
# are the test doubles of tests/boards/fakes, imported first so that they are not counted: on a
# board they are built in. What both hals import (asyncio, tbdevice.link) is imported first too.
#
#   micropython32 halprobe.py BUILD_DIR FAKES_DIR    prints "hal BYTES"
import gc
import sys

build, fakes = sys.argv[1], sys.argv[2]
sys.path[:0] = [fakes, build, build + "/lib"]
import asyncio  # noqa: E402,F401
import machine  # noqa: E402,F401
import network  # noqa: E402,F401
import ntptime  # noqa: E402,F401
from tbdevice.link import backoff  # noqa: E402,F401

try:
    import esp32  # noqa: F401
except ImportError:
    pass
gc.collect()
before = gc.mem_alloc()
import hal  # noqa: E402

h = hal.Hal({"log": True, "wifi": {"ssid": "ssid", "password": "password"}})
gc.collect()
print("hal", gc.mem_alloc() - before)
