# The reference application (DESIGN §3): reports current_fw_title/current_fw_version at
# boot, then simulated or real temperature and humidity every telemetry_interval_ms,
# through the store-and-forward queue (firmware/forward.py). What only some configs need
# (provisioning, power saving, diagnostics) is firmware/appopt.py, loaded only then.
import asyncio
import gc
import sys
import time

from forward import Forwarder
from tbdevice import errors
from tbdevice.device import Device
from tbdevice.jsonenc import dumps
from tbdevice.link import backoff
from version import FW_TITLE, FW_VERSION


class App:
    def __init__(self, cfg, hal, log=print):
        self.cfg = cfg
        self.hal = hal
        self.log = log if cfg.get("log", True) else None
        self.interval_ms = cfg["telemetry_interval_ms"]
        self.sent = 0
        self.failed = 0
        # what a taken uplink is logged as: the transport's own answer (HTTP status, or CoAP code)
        t = cfg.get("transport")
        self.ok = "200" if t in ("http", "https") else "PUBACK" if t in ("mqtt", "mqtts") else "2.01"
        self.device = None
        # "always_on" (default), or wake-report-sleep for PSM/eDRX device profiles (spec §13).
        self.power = cfg.get("power") or {"mode": "always_on"}
        self.sleepy = self.power["mode"] != "always_on"
        self.codec = None
        self.ota = None
        self._wake = asyncio.Event()
        self.forward = Forwarder(self, cfg)
        self.diagnostics_ms = cfg.get("diagnostics_interval_ms") or 0

    def say(self, text):
        if self.log:
            self.log(text)

    async def start(self):
        cfg = self.cfg
        from linkcfg import make_codec, make_link  # needed once: it leaves the heap below

        self.codec = make_codec(cfg)
        await self.hal.connect_network()
        self.device = dev = Device(cfg["host"], None, clock=self.hal.epoch_ms, log=self.log,
                                   link=make_link(cfg, self.log), codec=self.codec)
        del sys.modules["linkcfg"], make_codec, make_link
        # Collections between the phases of start-up (here, after subscribe() and after OTA's
        # set-up; start.py before App()): each phase's imports leave garbage, and collecting it
        # before the next phase's long-lived objects are made packs them together instead of
        # scattering them over the holes: 3 KB less heap needed on a 32-bit port (94 -> 91 KB).
        gc.collect()
        # The first open: over coaps the DTLS handshake, which a server that is down or refuses
        # our certificate fails; retried with back-off like every later one (tbdevice.supervisor).
        # A host name that does not resolve is raised (Device.connect): a typo in `host`, or a
        # network whose DNS is not up yet (a router that boots with the board after a power cut),
        # so it is said and tried again, never the end of the device.
        fails = 0
        while True:
            try:
                await dev.connect()
                break
            except OSError as e:
                fails += 1
                wait = backoff(fails, 2000)
                self.say("device: %s: is `host` right? trying again in %d s" % (e, wait // 1000))
                await asyncio.sleep_ms(wait)
        if not self.sleepy:  # a sleeping board runs no supervisor: each report is its liveness check
            dev.supervise(self.hal)  # the board's watchdog and network rejoin join the link's supervisor
        token = cfg.get("token")
        if not token:  # an X.509 certificate, the stored token, or provisioning (firmware/appopt.py)
            from appopt import token

            token = await token(self, dev)
        if token:
            dev.set_token(token)
        self.say("device: %s %s:%d, reporting every %d ms" % (
            cfg["transport"].upper().replace("COAP", "CoAP"), cfg["host"], cfg["port"], self.interval_ms))
        dev.on_rpc("setGpio", self.set_gpio)
        dev.on_rpc("getGpio", self.get_gpio)
        dev.on_rpc("getStatus", self.get_status)
        dev.on_rpc("reboot", self.reboot)
        dev.on_attribute("telemetry_interval_ms", self.set_interval)
        # Asleep, no pings (ThingsBoard does not count them as uplinks, spec §13); the report is the probe.
        dev.subscribe(keepalive_ms=0 if self.sleepy else 30000)
        gc.collect()
        # OTA (firmware/otaapp.py): report current_fw_*/current_sw_*, then follow fw_*/sw_* assignments.
        from otaapp import LazyOta

        self.ota = LazyOta(self)
        gc.collect()
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
        self.say("device: rebooting")
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
            self.say("telemetry interval: %d ms" % value)
        else:
            self.say("telemetry_interval_ms: ignoring %r (an integer >= 100 is needed)" % (value,))

    async def report(self, values):
        try:
            await self.device.send_telemetry(values)
        except (errors.Timeout, errors.ServerError, errors.Unauthorized, MemoryError) as e:
            # Not the data's fault: it goes into the store-and-forward queue, sent when the
            # server takes it (refused credentials are said once, by the supervisor), or
            # when the heap has room for the message again.
            self.failed += 1
            if isinstance(e, errors.Unauthorized):
                self.device.supervisor.refused(str(e))
            self.forward.sample(values)
            self.say("telemetry failed: %s: %s, queued" % (type(e).__name__, e))
            return False
        except errors.TbError as e:
            self.failed += 1
            self.say("telemetry failed: %s: %s" % (type(e).__name__, e))
            return False
        self.sent += 1
        self.say("telemetry %s -> %s" % (dumps(values), self.ok))
        if self.ota is not None:
            self.ota.healthy()  # connected and posted: the new image's health check (issue 4)
        return True

    def take_sample(self):
        """One sample into the store-and-forward queue; returns its ts (or None)."""
        return self.forward.sample(self.hal.read_sensors())

    async def sampler(self):
        # Sampling goes on whether or not the server answers (issue 8): the sender
        # (Forwarder.run) drains the queue when it can.
        due = time.ticks_ms()
        while True:
            try:
                self.take_sample()
            except MemoryError:  # a full heap for now (an update's code beside the app): the next one
                print("device: out of memory: a sample skipped")  # a constant: printed without heap
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
            except MemoryError:  # no heap for the wait's task: a plain sleep, not woken early
                await asyncio.sleep_ms(left)

    async def run(self):
        await self.start()
        if self.sleepy:
            from appopt import duty_cycle

            await duty_cycle(self, self.power.get("window_ms", 10000))
        asyncio.create_task(self.forward.run())
        if self.diagnostics_ms:
            from appopt import diagnostics_loop

            asyncio.create_task(diagnostics_loop(self))
        await self.sampler()
