# Freezes the firmware into a custom MicroPython build for ESP32_GENERIC (make firmware BOARD=ESP32_GENERIC
# MICROPYTHON=<checkout>): the bytecode stays in flash, so the heap keeps what .mpy files
# on the file system would take (docs/memory.md). main.py and config.json stay on the
# file system (boot runs /main.py; copy firmware/main.py there).
include("$(PORT_DIR)/boards/manifest.py")
require("ntptime")  # in the port's bundle-networking already; named because the HAL needs it
include("../common")  # the library and the firmware, as on every board
module("hal.py")
module("wifihal.py", base_path="../common")
