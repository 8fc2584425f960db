# Freezes the firmware into a custom MicroPython build for RPI_PICO_W (make firmware BOARD=RPI_PICO_W
# MICROPYTHON=<checkout>): the bytecode stays in flash, so the heap keeps what .mpy files
# on the file system would take (docs/memory.md). main.py and config.json stay on the
# file system (boot runs /main.py; copy firmware/main.py there).
include("$(PORT_DIR)/boards/manifest.py")
require("bundle-networking")  # what the stock RPI_PICO_W build freezes: ntptime, mip, requests, ...
include("../common")  # the library and the firmware, as on every board
module("hal.py")
module("wifihal.py", base_path="../common")
