# OTA in the reference app: the `ota` config key (DESIGN §3), the board's sinks and the
# running versions, handed to tbdevice.ota.Ota. A board's hal may offer ota_sinks(); the
# default is what file-system boards need:
#   unix port, Pico W: fw = an application bundle in a slot (firmware/bootslot.py)
#   ESP32:             fw = by the package's first bytes, an application bundle in a slot (stock
#                      MicroPython) or a MicroPython image in the next OTA app partition
#                      (esp32.Partition, a custom build with the app frozen)
#   every board:       sw = a data package kept as state_dir/ota/sw.bin
# The OTA modules (state machine, fetch, checksums, sinks: about 15 KB of heap on the 64-bit
# unix port even from ROMFS) load only when there is something to do (docs/memory.md):
# a download to resume or an image on trial recorded by the last boot, or an assignment
# (shared attributes fw_* / sw_*) naming another package than the running one. Until then
# LazyOta reports the running versions and watches the assignment.
import json

from version import FW_TITLE, FW_VERSION

_KINDS = ("fw", "sw")


def _read(path):
    try:
        with open(path) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def default_sinks(state_dir):
    import bootslot
    from tbdevice.otasink import FileSink, SlotSink

    try:
        import esp32  # feature detection (DESIGN §4.7)
    except ImportError:
        esp32 = None

    def fw():
        slot = SlotSink(state_dir, "fw", bootslot)
        if esp32 is None:
            return slot
        from tbdevice.otapart import Esp32Sink, PartitionSink

        return Esp32Sink(slot, PartitionSink(esp32))

    return {"fw": fw, "sw": lambda: FileSink(state_dir, "sw")}


def running(state_dir):
    """{kind: (title, version) or None}: this image, and the software package last applied
    (what tbdevice.otasink.FileSink.installed() reads)."""
    sw = _read(state_dir + "/ota/sw-installed.json")
    return {"fw": (FW_TITLE, FW_VERSION),
            "sw": (sw["title"], sw["version"]) if "title" in sw and "version" in sw else None}


def url_tls(cfg):
    """How an https package URL (fw_url) verifies its server (tbdevice.ota.Ota's url_ssl): a
    function making the TLS context when the first such package comes. The CA is "ota.ca",
    else "tls.ca"; the host name is checked too. Without either the package fails, saying how
    to configure one; only an explicit "ota": {"verify": false} (a throw-away test server)
    takes the server unchecked."""
    o = cfg.get("ota") or {}
    ca = o.get("ca") or (cfg.get("tls") or {}).get("ca")

    def make():
        import ssl

        from tbdevice.otastate import OtaError

        if o.get("verify") is False:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if not ca:
            raise OtaError('an https package URL and no CA to verify its server with: set "ota": {"ca": "<CA file>"}'
                           ' (or "tls": {"ca": ...}) in the config; "ota": {"verify": false} skips the check,'
                           " for a throw-away test server only")
        from httpclient.client import tls_context

        try:
            with open(ca, "rb") as f:
                return tls_context(f.read())
        except (OSError, ValueError) as e:
            raise OtaError("the CA file %s (ota.ca / tls.ca): %s" % (ca, e))

    return make


def make_ota(app):
    return LazyOta(app)


def load_ota(app):
    """The full tbdevice.ota.Ota for app (imports the OTA modules)."""
    from tbdevice.ota import Ota

    cfg = app.cfg
    o = cfg.get("ota") or {}
    sd = cfg["state_dir"]
    hal = app.hal
    sinks = hal.ota_sinks() if hasattr(hal, "ota_sinks") else default_sinks(sd)
    return Ota(app.device, sinks, running(sd), sd, app.report, hal.reset, mode=o.get("mode", "chunk"),
               chunk_size=o.get("chunk_size", 1024), path=o.get("path", "fw"), timeout_ms=o.get("timeout_ms", 10000),
               retry_ms=o.get("retry_ms", 5000), health_timeout_ms=o.get("health_timeout_ms", 120000),
               url_ssl=url_tls(cfg), log=app.log)


class LazyOta:
    """What the app needs of an Ota (current(), start(), healthy()) without its modules; it
    puts the real one in app.ota when there is an update to follow."""

    def __init__(self, app):
        self.app = app
        self.sd = app.cfg["state_dir"]
        self.running = running(self.sd)
        self.real = None
        self._healthy = False

    def current(self):
        out = {}
        for kind in _KINDS:
            r = self.running.get(kind)
            if r:
                out["current_%s_title" % kind] = r[0]
                out["current_%s_version" % kind] = r[1]
        return out

    def healthy(self):
        self._healthy = True

    async def start(self):
        for kind in _KINDS:
            if _read("%s/ota/%s.json" % (self.sd, kind)).get("stage"):  # tbdevice.otastate.Record
                return await self._load(kind)
        dev = self.app.device
        dev.on_attributes(self._on_change)
        keys = []
        for kind in _KINDS:
            keys += [kind + "_title", kind + "_version"]
        try:
            got = await dev.request_attributes(shared_keys=keys)
        except Exception as e:  # noqa: CoapError, TbError, ValueError: the subscription brings it
            self.app._say("ota: reading the assignment: %r (the subscription will bring it)" % e)
            return
        self._check(got.get("shared") or {})

    def _on_change(self, changed, deleted):
        self._check(self.app.device.shared)

    def _check(self, shared):
        if self.real is not None:
            return
        for kind in _KINDS:
            t, v = shared.get(kind + "_title"), shared.get(kind + "_version")
            if t and v and (t, v) != self.running.get(kind):
                import asyncio

                asyncio.create_task(self._load(kind))
                return

    async def _load(self, kind):
        if self.real is not None:
            return
        app = self.app
        try:
            ota = load_ota(app)
        except MemoryError:
            # The heap cannot take the OTA modules now: say so (a task that died here would
            # leave the package unanswered); the next change of the assignment tries again.
            import gc

            gc.collect()
            why = "out of memory loading the OTA modules (%d bytes free)" % gc.mem_free()
            app._say("ota: " + why)
            await app.report({kind + "_state": "FAILED", kind + "_error": why})
            return
        self.real = ota
        app.ota = ota
        if self._healthy:
            ota.healthy_ev.set()  # posted already: that was the health check (Ota.start confirms)
        await ota.start()
