# One boot as firmware/main.py does it: choose the slot, then import the application's version.
import json
import sys

import bootslot

slot = bootslot.select(sys.argv[1])
import version  # noqa: E402

print(json.dumps({"slot": slot, "version": version.FW_VERSION, "trial": bootslot.on_trial()}))
