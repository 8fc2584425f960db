# The OTA apply step and the first boot of the new slot, for the kill-at-random-points test:
# unpack state_dir/ota/fw.part into the free slot, switch the boot pointer, boot on trial, confirm.
import sys

import bootslot
from tbdevice.otasink import SlotSink

sd = sys.argv[1]
SlotSink(sd, "fw", bootslot).apply({"title": sys.argv[2], "version": sys.argv[3]})
print("applied")
bootslot.choose(sd)
bootslot.confirm(sd)
print("confirmed")
