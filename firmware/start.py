# The boot after the slot choice (firmware/main.py): config, board, app, run. Compiled
# (.mpy, or in the ROMFS image) so that main.py, which a board compiles from source at
# every boot, stays a few lines. Importing it runs the firmware.
import gc
import sys

import asyncio

# A collection after every 4 KB allocated, not only when the heap is full: the garbage of each
# import (a module's top-level code, the loader's buffers) is freed before the next module's
# code is placed, so that code fills those holes instead of leaving them between long-lived
# objects. Without it the heap ends up in holes too small for a datagram (docs/memory.md,
# "Fragmentation"): 3 KB more for the app, 10 KB more for an update, on the 32-bit port.
gc.threshold(4096)
# The result of main(), set at the end: a global from the start, so that storing it then allocates
# nothing (after a Ctrl-C in a collection every allocation fails: _stopped()).
rc = 0


def _on_trial():
    # main.py keeps the boot shim (bootslot.py) imported only when this boot runs an image on
    # trial; otherwise its heap went back after the slot choice.
    b = sys.modules.get("bootslot")
    return b is not None and b.on_trial()


def _reboot():
    try:
        import machine

        machine.reset()
    except (ImportError, AttributeError):
        sys.exit(75)  # the unix port: tools/run-device boots again on 75 (boards/UNIX/hal.py)


def _fatal(e):
    print("device: fatal: %s: %s" % (type(e).__name__, e))
    try:
        sys.print_exception(e)  # where it happened: what a user reports
    except MemoryError:  # no heap left even to print it: the line above says what
        pass
    if isinstance(e, MemoryError):
        gc.collect()
        # Printed in pieces, which allocates nothing: the heap may have no room for the line.
        print("device: the app did not fit in this board's ", (gc.mem_free() + gc.mem_alloc()) // 1024,
              " KB of heap: docs/memory.md says what fits where (ROMFS or a frozen build keep the code out of "
              "the heap)", sep="")
    if _on_trial():
        # A new image that dies before its health check: the next boot falls back (bootslot.py).
        print("device: the new image failed before its health check; rebooting into the previous one")
        _reboot()
    return 1


def _config(path):
    # config.py is needed once: it leaves the heap again after the check (docs/memory.md).
    import config

    try:
        return config.load(path)
    except config.ConfigError as e:
        print(e)  # one line naming the key (DESIGN §3)
        return None
    finally:
        del sys.modules["config"]


def _downloading(state_dir):
    # Here, so that nothing of otaapp stays referenced from main(): the update's own boot lets it go.
    from otaapp import downloading

    return downloading(state_dir)


def main(argv):
    cfg = _config(argv[1] if len(argv) > 1 else "config.json")
    gc.collect()  # config.py's code and the parsed file's garbage, before the app's imports (app.py: start)
    if cfg is None:
        if _on_trial():
            _reboot()  # a new image whose config check fails falls back like any other fault
        return 2
    try:
        import hal

        if _downloading(cfg["state_dir"]):
            # An update the last boot left under way is made alone: the app is not loaded
            # (firmware/otaload.update_boot; docs/ota.md, "Heap").
            import otaload

            gc.collect()
            run, app = otaload.update_boot(cfg, hal.Hal(cfg)), None
        else:
            from app import App

            gc.collect()
            app = App(cfg, hal.Hal(cfg))
            run = app.run()
    except Exception as e:  # noqa: a broken image on trial must still reboot into the old one
        return _fatal(e)
    try:
        asyncio.run(run)
    except KeyboardInterrupt:
        _stopped(app)
    except Exception as e:  # noqa: the last word before a board resets; say what it was
        if isinstance(e, MemoryError) and e.args and "heap is locked" in e.args[0]:
            # The same Ctrl-C, landed in a collection: what surfaced is the next allocation's
            # failure instead (the unix port, where tools/run-device passes SIGTERM on as one).
            _stopped(app)
            return 0
        app = run = None  # the app's heap back first: a MemoryError leaves none to say it with
        gc.collect()
        return _fatal(e)
    return 0


def _stopped(app):
    # Said without allocating: a Ctrl-C that lands in a collection (frequent with the threshold
    # above; on the unix port the signal interrupts a finaliser's close(), whose retry raises it)
    # leaves MicroPython 1.28's heap locked ("heap is locked"), and the half-swept heap is not
    # safe to collect again.
    if app is None:
        print("device: stopped in the update's own boot; the next boot goes on with it")
    else:
        print("device: stopped (", app.sent, " sent, ", app.failed, " failed)", sep="")


rc = main(sys.argv)
if rc:
    sys.exit(rc)
