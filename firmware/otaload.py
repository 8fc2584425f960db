# The reference app's OTA once there is something to do (firmware/otaapp.py loads this with
# the OTA modules): tbdevice.ota.Ota with the `ota` config key (DESIGN §3) and the board's
# sinks, or, for the boot after an update, no more than tbdevice.otaboot.Trial. A board's
# hal may offer ota_sinks(); the default is what file-system boards need:
#   unix port, Pico W: fw = an application bundle in a slot (firmware/bootslot.py)
#   ESP32:             fw = by the package's first bytes, an application bundle in a slot (stock
#                      MicroPython) or a MicroPython image in the next OTA app partition
#                      (esp32.Partition, a custom build with the app frozen)
#   every board:       sw = a data package kept as state_dir/ota/sw.bin
async def run(lazy, kind, trial):
    """For otaapp.LazyOta: load what there is to do (trial: only the image the last boot
    applied to confirm, or to report rolled back; else the full Ota, which also reads the
    assignment), hand it to lazy.real while it runs, and unload it all once it is idle."""
    app = lazy.app
    try:
        ota = (load_trial if trial else load_ota)(app, lazy.running)
    except MemoryError:
        unload_all()
        return await lazy.no_heap(kind)
    lazy.real = ota
    if lazy.healthy_posted:
        ota.healthy()  # posted already: that was the health check (it confirms)
    try:
        if trial:
            await ota.settle()
        else:
            await ota.start(follow=False)  # LazyOta hands it the attribute changes
        await ota.idle()
    finally:
        lazy.real = None
        unload_all()
    if trial:
        await lazy.look()


def unload_all():
    """The update is over, or there was none to make: the OTA modules and this one leave the
    heap (tbdevice.otastate stays: LazyOta uses it, and the others raise its OtaError)."""
    import sys

    from tbdevice.otastate import unload

    unload("ota", "otaboot", "otasink", "otapart", "otafetch", "otablock2", "coapota", "otaurl", "bundle", "checksum",
           "softhash")
    sys.modules.pop("otaload", None)
    b = sys.modules.get("bootslot")
    if b is not None and not b.on_trial():  # confirmed: firmware/start.py needs it no more
        del sys.modules["bootslot"]


def default_sinks(state_dir):
    from tbdevice.otasink import FileSink, SlotSink

    try:
        import esp32  # feature detection (DESIGN §4.7)
    except ImportError:
        esp32 = None

    def fw():
        slot = SlotSink(state_dir, "fw")  # the boot shim, bootslot.py, is imported to apply
        if esp32 is None:
            return slot
        from tbdevice.otapart import Esp32Sink, PartitionSink

        return Esp32Sink(slot, PartitionSink(esp32))

    return {"fw": fw, "sw": lambda: FileSink(state_dir, "sw")}


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


def _sinks(app):
    hal = app.hal
    return hal.ota_sinks() if hasattr(hal, "ota_sinks") else default_sinks(app.cfg["state_dir"])


def load_ota(app, running):
    """The full tbdevice.ota.Ota for app; running: {kind: (title, version) or None}."""
    from tbdevice.ota import Ota

    cfg = app.cfg
    o = cfg.get("ota") or {}
    return Ota(app.device, _sinks(app), running, cfg["state_dir"], app.report, app.hal.reset,
               mode=o.get("mode", "chunk"), chunk_size=o.get("chunk_size", 1024), path=o.get("path", "fw"),
               timeout_ms=o.get("timeout_ms", 10000), retry_ms=o.get("retry_ms", 5000),
               health_timeout_ms=o.get("health_timeout_ms", 120000), url_ssl=url_tls(cfg), log=app.log)


def load_trial(app, running):
    """tbdevice.otaboot.Trial for app: the image the last boot applied, confirmed after the
    health check or reported rolled back, without the download's modules."""
    from tbdevice.otaboot import Trial

    o = app.cfg.get("ota") or {}
    return Trial(_sinks(app), running, app.cfg["state_dir"], app.report, app.hal.reset,
                 o.get("health_timeout_ms", 120000), app.log)
