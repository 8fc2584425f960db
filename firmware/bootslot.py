# Boot-time choice of the application slot on file-system boards (unix port, Pico W).
# An OTA bundle is unpacked into state_dir/slots/a or /b; state_dir/ota/boot.json says
# which one boots. It is replaced atomically (write a temp file, rename over), so a
# power cut at any moment leaves either the old or the new pointer, never half of one.
#
#   {"slot": "b", "prev": "a", "state": "trial"}  set by the OTA apply step
#   -> the next boot marks it "booting" and runs b
#   -> b passes its health check and calls confirm(): {"slot": "b", "state": "ok"}
#   -> a boot that finds "booting" (b crashed, hung, was reset or lost power before
#      confirming) falls back: {"slot": "a", "state": "ok", "failed": "b"}
# "slot": null on trial is a new MicroPython image (ESP32: its OTA partition) that must run
# its own frozen code, so no slot shadows it; a failed trial falls back to the slot it left.
# A slot without its manifest.json (written last when unpacking) is never booted; with
# no usable slot the factory code on the normal path runs. Nothing here imports the
# application, so a broken bundle cannot break the choice. Kept small on purpose.
import json
import os
import sys

SLOTS = ("a", "b")
ROM = "app.romfs"  # a slot holding a ROMFS image instead of source folders (tools/romboot.py)
_trial = False
_sel = None  # (state_dir, slot) once select() ran: a second call does not boot again


def _path(state_dir):
    return state_dir + "/ota/boot.json"


def read(state_dir):
    try:
        with open(_path(state_dir)) as f:
            p = json.load(f)
        return p if isinstance(p, dict) else {}
    except (OSError, ValueError):
        return {}


def write(state_dir, pointer):
    path = _path(state_dir)
    tmp = path + ".tmp"
    _mkdir(state_dir + "/ota")
    with open(tmp, "w") as f:
        f.write(json.dumps(pointer))
    try:
        os.rename(tmp, path)  # atomic replace on POSIX and littlefs
    except OSError:  # FAT will not rename over a file: the one non-atomic fallback
        os.remove(path)
        os.rename(tmp, path)


def _mkdir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass


def slot_dir(state_dir, slot):
    return state_dir + "/slots/" + slot


def complete(state_dir, slot):
    if slot not in SLOTS:
        return False
    try:
        os.stat(slot_dir(state_dir, slot) + "/manifest.json")
        return True
    except OSError:
        return False


def choose(state_dir):
    """The slot to boot now (None: the factory code), updating the pointer as above."""
    global _trial
    p = read(state_dir)
    slot = p.get("slot")
    state = p.get("state")
    if state == "trial" and (slot is None or complete(state_dir, slot)):
        write(state_dir, {"slot": slot, "prev": p.get("prev"), "state": "booting"})
        _trial = True
    elif state in ("trial", "booting"):
        prev = p.get("prev")
        write(state_dir, {"slot": prev, "state": "ok", "failed": slot})
        slot = prev
    if slot is not None and not complete(state_dir, slot):
        slot = None
    return slot


def select(config_path):
    """Called first by main.py: put the chosen slot's code ahead of the factory code on
    sys.path. Returns the slot name or None."""
    global _sel
    if _sel is not None:
        return _sel[1]
    try:
        with open(config_path) as f:
            state_dir = json.load(f).get("state_dir") or "."
    except (OSError, ValueError, AttributeError):
        return None  # main.py reports the bad config
    slot = choose(state_dir)
    _sel = (state_dir, slot)
    if slot is not None and rom_image() is None:
        d = slot_dir(state_dir, slot)
        for sub in ("board", "firmware", "lib"):
            sys.path.insert(0, d + "/" + sub)
    return slot


def rom_image():
    """The ROMFS image of the slot select() chose, or None (source folders, or the factory code)."""
    if _sel is None or _sel[1] is None:
        return None
    p = slot_dir(_sel[0], _sel[1]) + "/" + ROM
    try:
        os.stat(p)
        return p
    except OSError:
        return None


def on_trial():
    """True while this boot runs a new slot that has not passed its health check."""
    return _trial


def free_slot(state_dir):
    """Where the next bundle goes: the slot not currently booted."""
    cur = read(state_dir).get("slot")
    return "b" if cur == "a" else "a"


def switch(state_dir, slot):
    """Boot `slot` next, on trial (the OTA apply step); None: no slot (a new firmware image)."""
    write(state_dir, {"slot": slot, "prev": read(state_dir).get("slot"), "state": "trial"})


def confirm(state_dir):
    """The running slot passed its health check: keep it."""
    global _trial
    p = read(state_dir)
    if p.get("state") == "booting":
        write(state_dir, {"slot": p.get("slot"), "state": "ok"})
    _trial = False
