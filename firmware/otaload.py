# The reference app's OTA once there is something to download (firmware/otaapp.py loads this
# with the OTA modules): tbdevice.ota.Ota with the `ota` config key (DESIGN §3) and the board's
# sinks (tbdevice.otasink.board_sinks). The boot after an update loads firmware/otatrial.py
# instead. With too little heap beside the app, reboot_for() records the download and reboots,
# and update_boot() (from firmware/start.py) makes it in a boot without the app (docs/ota.md).
async def run(lazy, kind):
    """For otaapp.LazyOta: load the full Ota (which reads the assignment), hand it to
    lazy.real while it runs, and unload it all once it is idle."""
    try:
        ota = load_ota(lazy.app, lazy.running, lambda k: reboot_for(lazy, k))
    except MemoryError:
        unload_all()
        return await reboot_for(lazy, kind)
    lazy.real = ota
    if lazy.healthy_posted:
        ota.healthy()  # posted already: an image on trial passed its health check
    try:
        await ota.start(follow=False)  # LazyOta hands it the attribute changes
        await ota.idle()
    finally:
        lazy.real = None
        unload_all()


async def reboot_for(lazy, kind):
    """Too little heap beside the app for this update (otaapp.LazyOta): record the download
    (where it stands, or from byte 0) and reboot; the next boot makes it alone (update_boot).
    What the app's queue holds goes to the server first."""
    import asyncio

    from tbdevice import otastate as st

    app = lazy.app
    lazy.rebooting = True
    rec = st.Record(lazy.sd, kind)
    if rec.get("stage") != "download":
        # The package by all its attributes: one that failed before is not tried again
        # (tbdevice.ota.Ota.decide says the same), and the reboot would be for nothing.
        try:
            got = await app.device.request_attributes(shared_keys=st.keys(kind))
            pkg = st.target(got.get("shared") or {}, kind)
        except Exception as e:  # noqa: CoapError, TbError, ValueError: the subscription brings it
            app.say("ota: reading the assignment: %r (the subscription will bring it)" % e)
            pkg = None
        if pkg is None or pkg == rec.get("failed"):
            if pkg is not None:
                app.say("ota: %s %s %s failed before; waiting for another assignment" % (kind, pkg["title"],
                                                                                       pkg["version"]))
            lazy.rebooting = False
            unload_all()
            return
        rec.set(pkg=pkg, stage="download", offset=0, failed=None)
    app.say("ota: %s: %d KB free beside the app, %d KB wanted: rebooting to update in a boot of its own" % (
        kind, st.free() // 1024, lazy.beside // 1024))
    q = app.forward.queue
    while len(q):  # the sender is on it; a reboot would lose it
        await asyncio.sleep_ms(100)
    app.hal.reset()


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


def load_ota(app, running, no_heap=None):
    """The full tbdevice.ota.Ota for app; running: {kind: (title, version) or None};
    no_heap: what a download that runs out of heap does (tbdevice.ota.Ota)."""
    from tbdevice.ota import Ota
    from tbdevice.otasink import board_sinks

    cfg = app.cfg
    o = cfg.get("ota") or {}
    sd = cfg["state_dir"]
    return Ota(app.device, board_sinks(app.hal, sd), running, sd, app.report, app.hal.reset,
               mode=o.get("mode", "chunk"), chunk_size=o.get("chunk_size", 1024), path=o.get("path", "fw"),
               timeout_ms=o.get("timeout_ms", 10000), retry_ms=o.get("retry_ms", 5000),
               health_timeout_ms=o.get("health_timeout_ms", 120000), url_ssl=url_tls(cfg), log=app.log,
               no_heap=no_heap)


class _Alone:
    # What load_ota and appopt.token need of an App (firmware/app.py), for update_boot.
    def __init__(self, cfg, hal):
        self.cfg = cfg
        self.hal = hal
        self.log = print if cfg.get("log", True) else None
        self.device = None
        self.codec = None
        self.ota = None

    def say(self, text):
        if self.log:
            self.log(text)

    async def report(self, values):
        await self.device.send_telemetry(values)
        self.say("telemetry %r" % (values,))
        if self.ota is not None:
            self.ota.healthy()  # connected and posted: an image on trial passed its health check (app.py)
        return True


async def update_boot(cfg, hal):
    """The boot after reboot_for (firmware/start.py: the last boot recorded a
    download under way): the link and the OTA modules without the app, so that the whole heap
    is the update's. It goes on with the download, verifies and applies it and reboots into
    the new image; when the update fails (FAILED is reported) or is no longer assigned, it
    reboots into the running image."""
    import sys

    from linkcfg import make_codec, make_link
    from otaapp import running
    from tbdevice import otastate as st
    from tbdevice.device import Device

    me = _Alone(cfg, hal)
    me.say("device: a boot of its own for the update under way")
    await hal.connect_network()
    me.codec = make_codec(cfg)
    me.device = dev = Device(cfg["host"], None, clock=hal.epoch_ms, log=me.log, link=make_link(cfg, me.log),
                             codec=me.codec)
    del make_link, make_codec, sys.modules["linkcfg"]
    await dev.connect()
    dev.supervise(hal)  # as in the app: the link re-opened after a fault, the board's watchdog fed
    token = cfg.get("token")
    if not token:  # an X.509 certificate, MQTT_BASIC or the stored token (firmware/appopt.py)
        from appopt import token

        token = await token(me, dev)
    if token:
        dev.set_token(token)
    sd = cfg["state_dir"]
    try:
        ota = me.ota = load_ota(me, running(sd))
        del running
        sys.modules.pop("otaapp", None)
    except MemoryError:
        ota = None
        unload_all()
    if ota is not None:
        await ota.start(follow=False)
        await ota.idle()
    for kind in st.KINDS:  # still here: nothing to reboot into; the next boot is the app's
        rec = st.Record(sd, kind)
        if rec.get("stage") == "download":
            if ota is None:
                why = "out of memory loading the OTA modules (%d bytes free)" % st.free()
                me.say("ota: %s FAILED: %s" % (kind, why))
                try:
                    await me.report({kind + "_state": st.FAILED, kind + "_error": why})
                except Exception as e:  # noqa: TbError, OSError: said, and the reboot goes on
                    me.say("ota: report failed: %r" % e)
                rec.set(failed=rec.get("pkg"))
            rec.set(stage=None, pkg=None, offset=None)
    hal.reset()
