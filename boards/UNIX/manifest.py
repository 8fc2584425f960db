# Freezes the firmware into a custom unix-port build (make firmware BOARD=UNIX MICROPYTHON=<checkout>).
include("$(PORT_DIR)/variants/manifest.py")
include("../common")  # the library and the firmware, as on every board
module("hal.py")
