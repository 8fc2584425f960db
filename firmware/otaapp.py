# OTA in the reference app while there is nothing to do: reports the running versions and
# watches the assignment. The OTA modules (the state machine, fetch, checksums, sinks, and
# firmware/otaload.py or, after an update, firmware/otatrial.py, which set them up) load only
# when there is something to do (docs/ota.md, "Heap"): a download to resume or an image on
# trial recorded by the last boot, or an assignment (shared attributes fw_* / sw_*) naming
# another package than the running one that has not failed before; they leave the heap when
# that is over. When the heap beside the app is short for an update (ota.beside_app_kb), the
# update runs in a boot of its own instead: the download is recorded and the board reboots
# (otaload.reboot_for) into otaload.update_boot, which loads the link and the OTA modules and
# not the app.
import asyncio
import gc
import json

from version import FW_TITLE, FW_VERSION

_KINDS = ("fw", "sw")
# The free heap (KB, collected) an update needs beside the app: measured 49-50 KB on a 32-bit
# port with the modules as plain .mpy files (tools/min-heap ota, docs/memory.md).
BESIDE_APP_KB = 52


def _read(path):
    try:
        with open(path) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def downloading(state_dir):
    """True when the last boot left a download under way (tbdevice.otastate.Record): this
    boot finishes it alone (firmware/start.py)."""
    return any(_read("%s/ota/%s.json" % (state_dir, k)).get("stage") == "download" for k in _KINDS)


def running(state_dir):
    """{kind: (title, version) or None}: this image, and the software package last applied
    (what tbdevice.otasink.FileSink.installed() reads)."""
    sw = _read(state_dir + "/ota/sw-installed.json")
    return {"fw": (FW_TITLE, FW_VERSION),
            "sw": (sw["title"], sw["version"]) if "title" in sw and "version" in sw else None}


class LazyOta:
    """What the app needs of an Ota (current(), start(), healthy()) without its modules. When
    there is something to do, firmware/otaload.run() loads tbdevice.ota.Ota (or, to confirm
    the image the last boot applied, firmware/otatrial.run() loads tbdevice.otaboot.Trial) as
    `real`, which gets the attribute changes, and drops it again once it is idle: a finished
    or failed update gives its heap back."""

    def __init__(self, app):
        self.app = app
        self.sd = app.cfg["state_dir"]
        self.running = running(self.sd)
        self.real = None
        self.healthy_posted = False
        self.rebooting = False  # for an update in a boot of its own (otaload.reboot_for)
        self.beside = (app.cfg.get("ota") or {}).get("beside_app_kb", BESIDE_APP_KB) * 1024

    def current(self):
        out = {}
        for kind in _KINDS:
            r = self.running.get(kind)
            if r:
                out["current_%s_title" % kind] = r[0]
                out["current_%s_version" % kind] = r[1]
        return out

    def healthy(self):
        self.healthy_posted = True
        if self.real is not None:
            self.real.healthy()

    async def start(self):
        self.app.device.on_attributes(self._on_change)
        for kind in _KINDS:
            stage = _read("%s/ota/%s.json" % (self.sd, kind)).get("stage")  # tbdevice.otastate.Record
            if stage:  # the image the last boot applied (a download goes to otaload.update_boot)
                asyncio.create_task(self._load(kind, stage == "applying"))
                return
        await self.look()

    async def look(self):
        # The assignment, read once (one made while the device was off is found this way).
        keys = []
        for kind in _KINDS:
            keys += [kind + "_title", kind + "_version"]
        try:
            got = await self.app.device.request_attributes(shared_keys=keys)
        except Exception as e:  # noqa: CoapError, TbError, ValueError: the subscription brings it
            self.app.say("ota: reading the assignment: %r (the subscription will bring it)" % e)
            return
        self._check(got.get("shared") or {})

    def _on_change(self, changed, deleted):
        if self.real is not None:
            self.real.consider(self.app.device.shared)
        else:
            self._check(self.app.device.shared)

    def _check(self, shared):
        for kind in _KINDS:
            t, v = shared.get(kind + "_title"), shared.get(kind + "_version")
            if t and v and (t, v) != self.running.get(kind) and not self._failed_before(kind, shared):
                asyncio.create_task(self._load(kind))
                return

    def _failed_before(self, kind, shared):
        # The package that failed last is not tried again until the assignment changes
        # (tbdevice.ota.Ota.decide says the same when it is loaded).
        failed = _read("%s/ota/%s.json" % (self.sd, kind)).get("failed")
        if not failed:
            return False
        from tbdevice.otastate import target

        pkg = target(shared, kind)
        if failed != pkg:
            return False
        self.app.say("ota: %s %s %s failed before; waiting for another assignment" % (kind, pkg["title"],
                                                                                    pkg["version"]))
        return True

    async def _load(self, kind, trial=False):
        # trial: the last boot applied an image and nothing else is under way (otatrial.run);
        # else with less free heap than beside_app_kb the update gets a boot of its own
        if self.real is not None or self.rebooting:
            return
        gc.collect()
        alone = not trial and gc.mem_free() < self.beside
        try:
            if trial:
                from otatrial import run  # the boot after an update: no download code
            else:
                from otaload import reboot_for, run

                if alone:
                    run = reboot_for
        except MemoryError:
            return await self.no_heap(kind)
        await run(self, kind)

    async def no_heap(self, kind):
        # The heap cannot take the OTA modules now: say so (a task that died here would leave
        # the package unanswered); the next change of the assignment tries again.
        gc.collect()
        why = "out of memory loading the OTA modules (%d bytes free)" % gc.mem_free()
        self.app.say("ota: " + why)
        await self.app.report({kind + "_state": "FAILED", kind + "_error": why})
