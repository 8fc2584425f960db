# The boot after an update, for otaapp.LazyOta: tbdevice.otaboot.Trial confirms the image the
# last boot applied once the app has connected and posted (its health check), or reports it
# rolled back. Apart from firmware/otaload.py, whose download and reboot code this boot never
# needs: here the whole app runs beside the OTA code, and both must fit (docs/memory.md).
import sys


async def run(lazy, kind):
    """Confirm (or report rolled back) the image the last boot applied, then let the OTA
    code go, post what the trial had to say and read the assignment as an idle app does."""
    said = []
    settled = await _settle(lazy, said)
    # Nothing holds the trial's objects now (they lived in _settle's frame), so the OTA
    # modules' code leaves the heap with them: this boot ends up as light as any other.
    from tbdevice.otastate import unload

    unload("otaboot", "otasink", "otapart", "otastate")
    sys.modules.pop("otatrial", None)
    b = sys.modules.get("bootslot")
    if b is not None and not b.on_trial():  # confirmed: firmware/start.py needs it no more
        del sys.modules["bootslot"]
    for values in said:  # UPDATED (or FAILED): posted only now, with the OTA code gone
        await lazy.app.report(values)
    await (lazy.look() if settled else lazy.no_heap(kind))


async def _settle(lazy, said):
    # False when the heap had no room for the OTA code. What the trial reports goes to `said`:
    # a message sent from here would keep the OTA code in the heap until it is answered, beside
    # the app and its own messages, the peak of this boot (the local confirmation needs no link).
    app = lazy.app

    async def report(values):
        said.append(values)
        return True
    try:
        from tbdevice.otaboot import Trial, kept_sinks

        # A board's own sinks confirm as they do after an update beside the app; the default
        # ones (tbdevice.otasink, and tbdevice.otapart on an ESP32) are not loaded for it.
        hal = app.hal
        sinks = hal.ota_sinks() if hasattr(hal, "ota_sinks") else kept_sinks(lazy.sd)
        o = app.cfg.get("ota") or {}
        trial = Trial(sinks, lazy.running, lazy.sd, report, hal.reset, o.get("health_timeout_ms", 120000),
                      app.log)
    except MemoryError:
        return False
    lazy.real = trial
    if lazy.healthy_posted:
        trial.healthy()  # posted already: that was the health check (it confirms)
    try:
        await trial.settle()
        await trial.idle()
    finally:
        lazy.real = None
    return True
