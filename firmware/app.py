# The reference application (DESIGN §3): reports current_fw_title/current_fw_version at
# boot, then simulated or real temperature and humidity every telemetry_interval_ms,
# through the store-and-forward queue (firmware/forward.py), and optional diagnostics.
import asyncio
import gc
import time

from coap.errors import CoapError
from tbdevice import credentials, errors
from forward import Forwarder
from tbdevice.device import Device
from tbdevice.jsonenc import dumps
from tbdevice.provision import provision
from version import FW_TITLE, FW_VERSION


def make_link(cfg, log):
    """The link cfg["transport"] names: CoAP over UDP, or HTTP(S) (spec §15), where
    tls.ca is the CA file that the server's certificate must chain to."""
    t = cfg["transport"]
    if t in ("http", "https"):
        from httpclient.client import tls_context
        from tbdevice.httplink import HttpLink

        tls = None
        if t == "https":
            with open(cfg["tls"]["ca"], "rb") as f:
                tls = tls_context(f.read())
        return HttpLink(cfg["host"], cfg["port"], tls=tls, log=log, **(cfg.get("http") or {}))
    from tbdevice.coaplink import CoapLink

    coap = dict(cfg.get("coap") or {})
    con = coap.pop("con", True)
    if t == "coaps":
        # DTLS 1.2 with X.509 (spec §12). The handshake runs in every link.open(), so the
        # reconnect loop (Device._reopen) redoes it.
        from coap.dtls import BLOCK_SIZE, DtlsTransport

        tls = cfg.get("tls") or {}
        coap["transport"] = DtlsTransport(cfg["host"], cfg["port"], tls.get("ca"), tls.get("cert"), tls.get("key"),
                                          tls.get("verify", True))
        coap.setdefault("block_size", BLOCK_SIZE)
    return CoapLink(cfg["host"], cfg["port"], None, con, None, log, **coap)


def make_codec(cfg):
    """The payload type the device profile requires (spec §4): None for JSON, or protobuf
    by the profile schema module cfg["proto"] (tools/protoc.py; the defaults of spec §11.1
    when absent)."""
    if cfg["payload"] != "protobuf":
        return None
    from tbdevice.protocodec import ProtoCodec

    return ProtoCodec(cfg.get("proto"))


class App:
    def __init__(self, cfg, hal, log=print):
        self.cfg = cfg
        self.hal = hal
        self.log = log if cfg.get("log", True) else None
        self.interval_ms = cfg["telemetry_interval_ms"]
        self.sent = 0
        self.failed = 0
        # what a taken uplink is logged as: the transport's own answer (HTTP status, or CoAP code)
        self.ok = "200" if cfg.get("transport") in ("http", "https") else "2.01"
        self.device = None
        # "always_on" (default), or wake-report-sleep for PSM/eDRX device profiles (spec §13).
        self.power = cfg.get("power") or {"mode": "always_on"}
        self.sleepy = self.power["mode"] != "always_on"
        self.codec = None
        self.ota = None
        self._wake = asyncio.Event()
        self.forward = Forwarder(self, cfg)
        self.diagnostics_ms = cfg.get("diagnostics_interval_ms") or 0

    def _say(self, text):
        if self.log:
            self.log(text)

    async def _token(self, client):
        cfg = self.cfg
        if cfg.get("token"):
            return cfg["token"]
        if cfg["transport"] == "coaps" and (cfg.get("tls") or {}).get("cert"):
            self._say("credentials: X.509, the client certificate names the device (token-less routes)")
            return None
        creds = credentials.load(cfg["state_dir"])
        if creds:
            self._say("credentials: using the stored token of %s" % creds.get("device_name"))
            return creds["token"]
        p = cfg["provision"]
        name = p.get("device_name") or self.hal.unique_name()
        self._say("provision: asking for credentials as %s" % name)
        while True:
            try:
                creds = await provision(client, p["device_key"], p["device_secret"], name, codec=self.codec)
                break
            except errors.ProvisionError as e:
                # NOT_FOUND (wrong key/secret) and FAILURE (name taken) will not mend by
                # themselves: say so clearly and stop.
                self._say("provision: refused: %s" % e)
                raise
            except (CoapError, OSError) as e:
                self._say("provision: %r, retrying" % e)
                await asyncio.sleep_ms(5000)
        credentials.save(cfg["state_dir"], creds)
        self._say("provision: stored the new token for %s" % name)
        return creds["token"]

    async def _open(self, link):
        # The first open: over coaps it is the DTLS handshake, which a server that is down or
        # refuses our certificate check fails. Retried with back-off like later ones (Device._reopen).
        d = 500
        while True:
            try:
                return await link.open()
            except OSError as e:
                self._say("link: %r, retrying in %d ms" % (e, d))
                await asyncio.sleep_ms(d)
                d = min(d * 2, 60000)

    async def start(self):
        cfg = self.cfg
        link = make_link(cfg, self.log)
        self.codec = make_codec(cfg)
        await self.hal.connect_network()
        await self._open(link)
        if not self.sleepy:  # a sleeping board runs no supervisor: each report is its liveness check
            self.hal.supervise(link)  # the board's link supervisor and watchdog (boards/common/wifihal.py)
        token = await self._token(link)
        self.device = Device(cfg["host"], token, clock=self.hal.epoch_ms, log=self.log, link=link, codec=self.codec)
        self._say("device: %s %s:%d, reporting every %d ms" % (
            cfg["transport"].upper().replace("COAP", "CoAP"), cfg["host"], cfg["port"], self.interval_ms))
        dev = self.device
        dev.on_rpc("setGpio", self.set_gpio)
        dev.on_rpc("getGpio", self.get_gpio)
        dev.on_rpc("getStatus", self.get_status)
        dev.on_rpc("reboot", self.reboot)
        dev.on_attribute("telemetry_interval_ms", self.set_interval)
        # Asleep, no pings (ThingsBoard does not count them as uplinks, spec §13); the report is the probe.
        dev.subscribe(keepalive_ms=0 if self.sleepy else 30000)
        # OTA (firmware/otaapp.py): report current_fw_*/current_sw_*, then follow fw_*/sw_* assignments.
        from otaapp import make_ota

        self.ota = make_ota(self)
        await self.report(self.ota.current())
        await self.ota.start()

    # ---- RPC methods of the run contract (DESIGN §3) --------------------------
    def set_gpio(self, params):
        pin, value = params["pin"], params["value"]
        self.hal.pin_write(pin, value)
        return {"pin": pin, "value": self.hal.pin_read(pin)}

    def get_gpio(self, params):
        pin = params["pin"]
        return {"pin": pin, "value": self.hal.pin_read(pin)}

    def get_status(self, params):
        d = self.device
        dl = d.downlink
        gc.collect()  # what is really in use (the storm test compares it before and after)
        return {
            "uptime_ms": self.hal.uptime_ms(),
            "free_heap": self.hal.free_heap(),
            "heap_used": gc.mem_alloc(),
            "sent": self.sent,
            "failed": self.failed,
            "queued": len(self.forward.queue),
            "queue_dropped": self.forward.queue.dropped,
            "rpc": dl.rpc.handled if dl else 0,
            "reconnects": d.reconnects,
            "retransmissions": d.link.retransmissions,
            "fw_title": FW_TITLE,
            "fw_version": FW_VERSION,
        }

    def reboot(self, params):
        # Reply first, then reset: the reply is posted before the scheduled reset runs.
        asyncio.create_task(self._reboot_later())
        return {"rebooting": True}

    async def _reboot_later(self):
        await asyncio.sleep_ms(1000)
        self._say("device: rebooting")
        self.hal.reset()

    def set_interval(self, value):
        # The shared attribute of the same name changes the period live (DESIGN §3);
        # deleting it brings back the configured one.
        if value is None:
            value = self.cfg["telemetry_interval_ms"]
        if value == self.interval_ms:
            return  # e.g. the whole state after each (re-)subscription: no extra sample
        if isinstance(value, int) and value >= 100:
            self.interval_ms = value
            self._wake.set()
            self._say("telemetry interval: %d ms" % value)
        else:
            self._say("telemetry_interval_ms: ignoring %r (an integer >= 100 is needed)" % (value,))

    async def duty_cycle(self, window_ms):
        # Wake-report-sleep (spec §13): each report is an uplink that opens the server's
        # downlink window (PSM activity timer, eDRX paging window), in which the merged
        # attribute updates and the held RPCs arrive. Listen for window_ms after the last
        # datagram (a reply to an RPC is an uplink too and re-opens the window), then sleep
        # through the HAL until the next report is due.
        cl = self.device.link.client
        while True:
            t0 = time.ticks_ms()
            self.take_sample()
            err = await self.forward.flush()  # this sample and whatever earlier wakes could not send
            if err is not None:
                self.failed += 1
                self._say("telemetry: %s, %d queued for the next wake" % (err, len(self.forward.queue)))
                await self.device.reconnect()  # no answer: a new socket, the observations re-register
            while time.ticks_diff(time.ticks_ms(), cl.last_rx) < window_ms:
                await asyncio.sleep_ms(window_ms - time.ticks_diff(time.ticks_ms(), cl.last_rx))
            left = self.interval_ms - time.ticks_diff(time.ticks_ms(), t0)
            if left > 0:
                self._say("power: %s, sleeping %d ms" % (self.power["mode"], left))
                self.hal.light_sleep(left)  # the board stops; nothing is received meanwhile
                await self.hal.connect_network()
                self._say("power: awake")

    async def report(self, values):
        try:
            await self.device.send_telemetry(values)
            self.sent += 1
            self._say("telemetry %s -> %s" % (dumps(values), self.ok))
            if self.ota is not None:
                self.ota.healthy()  # connected and posted: the new image's health check (issue 4)
            return True
        except (CoapError, errors.TbError) as e:
            self.failed += 1
            self._say("telemetry failed: %s: %s" % (type(e).__name__, e))
            return False

    def take_sample(self):
        """One sample into the store-and-forward queue; returns its ts (or None)."""
        return self.forward.sample(self.hal.read_sensors())

    async def sampler(self):
        # Sampling goes on whether or not the server answers (issue 8): the sender
        # (Forwarder.run) drains the queue when it can.
        due = time.ticks_ms()
        while True:
            self.take_sample()
            due = time.ticks_add(due, self.interval_ms)
            left = time.ticks_diff(due, time.ticks_ms())
            if left <= 0:  # late (a blocking call, a full heap): start again from now
                due, left = time.ticks_ms(), 0
            self._wake.clear()
            try:  # a new interval wakes the loop at once
                await asyncio.wait_for_ms(self._wake.wait(), left)
                due = time.ticks_ms()
            except asyncio.TimeoutError:
                pass

    def diagnostics(self):
        """The slow-cadence health sample (diagnostics_interval_ms); None values left out."""
        d = self.device
        f = self.forward
        gc.collect()
        v = {
            "retransmissions": d.link.retransmissions,
            "reconnects": d.reconnects,
            "queue_dropped": f.queue.dropped,
            "free_heap": self.hal.free_heap(),
        }
        nomem = getattr(getattr(d.link, "client", None), "nomem", 0)  # CoAP reads that found no heap
        if nomem:
            v["rx_no_heap"] = nomem
        rejoins = getattr(self.hal, "rejoins", None)  # Wi-Fi boards: link rebuilds by the supervisor
        if rejoins is not None:
            v["wifi_rejoins"] = rejoins
        rssi = self.hal.rssi() if hasattr(self.hal, "rssi") else None
        if rssi is not None:
            v["rssi"] = rssi
        if f.last_error:
            v["last_error"] = f.last_error
        return v

    async def diagnostics_loop(self):
        while True:
            await asyncio.sleep_ms(self.diagnostics_ms)
            self.forward.sample(self.diagnostics())

    async def run(self):
        await self.start()
        if self.sleepy:
            await self.duty_cycle(self.power.get("window_ms", 10000))
        asyncio.create_task(self.forward.run())
        if self.diagnostics_ms:
            asyncio.create_task(self.diagnostics_loop())
        await self.sampler()
