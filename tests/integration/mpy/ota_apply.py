# The OTA apply step and the first boot of the new slot, for the kill-at-every-step test:
# unpack state_dir/ota/fw.part into the free slot, switch the boot pointer, boot on trial, confirm.
# Every write to flash on the way (a file opened for writing, a folder emptied, a boot pointer
# written) is a step, printed as "step N what" before it happens; with a step number as the 4th
# argument the script stops there ("stopped") and waits to be killed, so the test kills it at
# exactly that point rather than after a guessed time.
import sys
import time

import bootslot
from tbdevice import bundle
from tbdevice.otasink import SlotSink

STOP = int(sys.argv[4]) if len(sys.argv) > 4 else -1
_n = 0


def step(what):
    global _n
    print("step", _n, what)
    if _n == STOP:
        print("stopped")
        while True:
            time.sleep(1)
    _n += 1


def _traced(name, fn):
    def call(*a):
        step("%s %s" % (name, a[0] if name != "pointer" else a[1]))
        return fn(*a)

    return call


_open = open


def _open_traced(path, mode="r", *a):
    if "w" in mode or "+" in mode:
        step("write " + path)
    return _open(path, mode, *a)


# The modules look these names up as globals at each call: the traced versions run instead.
bundle.open = _open_traced
bundle._rmtree = _traced("rmtree", bundle._rmtree)
bootslot.write = _traced("pointer", bootslot.write)

sd = sys.argv[1]
SlotSink(sd, "fw", bootslot).apply({"title": sys.argv[2], "version": sys.argv[3]})
print("applied")
bootslot.choose(sd)
bootslot.confirm(sd)
print("confirmed")
