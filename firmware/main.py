# Entry point on every board: `micropython main.py [config.json]` on the unix port; on a
# board, main.py runs at boot and reads config.json from the file system. A board compiles
# this file from source at every boot, so it stays this short: the boot shim (bootslot.py)
# puts the OTA slot chosen for this boot ahead of the factory code on sys.path, before
# anything of the application is imported; then firmware/start.py runs the firmware.
import sys

import bootslot

bootslot.select(sys.argv[1] if len(sys.argv) > 1 else "config.json")
if not bootslot.on_trial():  # only an image on trial needs it after the boot (start.py)
    del sys.modules["bootslot"]
del bootslot
import start  # noqa: E402,F401
