# What every boot of an OTA-capable device needs (spec §10, issue 4), without the download:
# reporting <kind>_state, failing a package, the board's sinks, and the image the last boot
# applied. That image runs on trial until the application's health check (it connected and
# posted telemetry): then its sink keeps it and UPDATED is reported. A record still saying
# "applying" for a package that is not the one running means the new image did not come up
# and was rolled back (by the boot shim or the bootloader): FAILED. tbdevice.ota.Ota builds
# on Trial; an application that only has an image to confirm can load no more than this
# (firmware/otaapp.py).
import asyncio
import sys
import time

from tbdevice import otastate as st
from tbdevice.errors import TbError

_RETRY_MS = 500  # a confirmation that found no heap tries again after this


def cancel_rollback(esp32):
    """Keep the ESP32 app image that runs now (the bootloader's rollback no longer applies)."""
    try:
        esp32.Partition.mark_app_valid_cancel_rollback()
    except OSError:
        pass  # a build without rollback support (OSError(-261)): nothing to cancel


class Kept:
    """The default sinks' confirmation (tbdevice.otasink.board_sinks) without their download
    code, for a boot that only confirms (firmware/otatrial.py). fw: the boot shim's slot
    (firmware/bootslot.py) and, on an ESP32, the bootloader's rollback, as
    tbdevice.otapart.Esp32Sink does; each is a no-op unless its own image is on trial.
    sw: nothing (a data package has no trial)."""

    def __init__(self, state_dir, kind):
        self.state_dir = state_dir
        self.kind = kind

    def confirm(self):
        if self.kind != "fw":
            return
        __import__("bootslot").confirm(self.state_dir)
        # Confirmed: nothing needs the boot shim now (firmware/start.py asks for it only while on
        # trial), and its heap is back before UPDATED is reported.
        sys.modules.pop("bootslot", None)
        try:
            import esp32
        except ImportError:
            return
        cancel_rollback(esp32)


def kept_sinks(state_dir):
    """board_sinks' shape ({kind: factory}) for Trial, with Kept for every kind."""
    return {"fw": lambda: Kept(state_dir, "fw"), "sw": lambda: Kept(state_dir, "sw")}


class Trial:
    """sinks: {kind: factory() -> sink}; running: {kind: (title, version) or None}.
    report(values) posts telemetry (async, True when posted); reset() reboots the board."""

    def __init__(self, sinks, running, state_dir, report, reset, health_timeout_ms=120000, log=None):
        self.sinks = sinks
        self.running = running
        self.state_dir = state_dir
        self.report_cb = report
        self.reset = reset
        self.health_timeout_ms = health_timeout_ms
        self.log = log
        self._sinks = {}
        self.pending = {}  # kind -> pkg applied, awaiting the health check
        self.healthy_ev = asyncio.Event()
        self.done = asyncio.Event()  # set after each finished job, confirmation or look at the assignment
        self.last_error = None
        self._last_ms = time.ticks_ms()

    def _say(self, text):
        if self.log:
            self.log("ota: " + text)

    async def _report(self, values):
        # Telemetry is stored per (key, ts) in milliseconds: states posted within the same
        # millisecond would replace each other (DOWNLOADED, VERIFIED, UPDATING come together).
        while time.ticks_diff(time.ticks_ms(), self._last_ms) < 2:
            await asyncio.sleep_ms(1)
        self._last_ms = time.ticks_ms()
        try:
            return await self.report_cb(values)
        except TbError as e:
            self._say("report failed: %r" % e)
            return False

    async def _fail(self, kind, why):
        self.last_error = why
        self._say("%s FAILED: %s" % (kind, why))
        await self._report({kind + "_state": st.FAILED, kind + "_error": why})
        self.done.set()

    def _sink(self, kind):
        # One sink object per kind, so a cancel can close what the job opened.
        s = self._sinks.get(kind)
        if s is None:
            s = self._sinks[kind] = self.sinks[kind]()
        return s

    def current(self):
        """current_<kind>_title / _version of the running images (reported at boot)."""
        out = {}
        for kind in st.KINDS:
            r = self.running.get(kind)
            if r:
                out["current_%s_title" % kind] = r[0]
                out["current_%s_version" % kind] = r[1]
        return out

    async def settle(self):
        """Settle what the last boot left: an image applied and now running waits for its
        health check (then it is confirmed; without one within health_timeout_ms the board
        resets, which rolls it back); one that is not running was rolled back."""
        for kind in st.KINDS:
            if kind not in self.sinks:
                continue
            rec = st.Record(self.state_dir, kind)
            pkg = rec.get("pkg")
            if rec.get("stage") == "applying" and pkg:
                r = self.running.get(kind)
                if r and st.running_is(pkg, r[0], r[1]):
                    self.pending[kind] = pkg
                    self._say("%s %s %s booted; confirming after the health check" % (kind, pkg["title"],
                                                                                       pkg["version"]))
                else:
                    rec.set(stage=None, pkg=None, offset=None, failed=pkg)
                    await self._fail(kind, "the new image did not pass its health check; rolled back to %s" % (
                        r[1] if r else "the previous image"))
        if self.pending:
            if self.healthy_ev.is_set():  # the app posted before settle(): that was the health check
                asyncio.create_task(self._confirm())
            else:
                asyncio.create_task(self._health_watch())

    def healthy(self):
        """The app connected and posted: confirm an image on trial and report UPDATED."""
        if self.healthy_ev.is_set():
            return
        self.healthy_ev.set()
        if self.pending:
            asyncio.create_task(self._confirm())

    def consider(self, shared):
        """An image on trial takes no update: the caller looks at the assignment again once
        this is idle() (tbdevice.ota.Ota follows it)."""

    def busy(self):
        return bool(self.pending)

    async def idle(self):
        """Return once nothing is under way (here: no image waits for its health check)."""
        while self.busy():
            self.done.clear()
            await self.done.wait()

    async def _confirm(self):
        for kind, pkg in list(self.pending.items()):
            while True:
                try:
                    self._sink(kind).confirm()
                    st.Record(self.state_dir, kind).set(stage=None, pkg=None, offset=None)
                    break
                except MemoryError:  # the app beside it filled the heap for now: once it has room
                    await asyncio.sleep_ms(_RETRY_MS)
            del self.pending[kind]
            self._say("%s %s confirmed" % (kind, pkg["version"]))
            await self._report({kind + "_state": st.UPDATED})
        self.done.set()

    async def _health_watch(self):
        try:
            await asyncio.wait_for_ms(self.healthy_ev.wait(), self.health_timeout_ms)
        except asyncio.TimeoutError:
            self._say("no health check within %d ms: resetting to roll back" % self.health_timeout_ms)
            self.reset()
