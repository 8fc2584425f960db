# What the Wi-Fi boards (ESP32_GENERIC, RPI_PICO_W) share: Wi-Fi bring-up, the hooks through
# which the device's link supervisor (tbdevice/supervisor.py) rebuilds Wi-Fi and feeds the
# watchdog, the status LED, NTP time, sleep, pins, reset. Each board's hal.py subclasses
# WifiHal with its port's quirks (status codes, power management, LED pin, sensor).
# Only the ports' documented APIs (network.WLAN, machine, ntptime) are used; pyright checks
# this file against each port's stubs (boards/<BOARD>/pyrightconfig.json).
import asyncio
import gc
import time

import machine
import network
from tbdevice.link import backoff

try:
    from micropython import const
except ImportError:  # CPython, for tooling
    def const(x):
        return x

_EPOCH_2000_MS = const(946684800000)  # 2000-01-01 in Unix epoch ms: the epoch of ESP32 and rp2
_JOIN_MS = const(20000)  # one association attempt (DHCP included)
_NTP_RETRY_MS = const(60000)  # until the clock is set; then every _NTP_EVERY_MS against drift
_NTP_EVERY_MS = const(3600000)


class WifiHal:
    NAME = "WIFI"
    PREFIX = "mpy"  # unique_name(): PREFIX-<hex of machine.unique_id()>
    LED = None  # the status LED's Pin id, or None
    WDT_MS = 8000  # rp2's hardware maximum is 8388 ms
    FATAL = ()  # status codes after which waiting longer for this attempt is pointless
    RESET_MS = 900000  # offline this long (15 min): reset, the last resort (mqtt_as does the same)

    def __init__(self, cfg, log=print):
        self.cfg = cfg
        self.log = log if cfg.get("log", True) else None
        wifi = cfg.get("wifi") or {}
        self.ssid = wifi.get("ssid")
        self.password = wifi.get("password")
        self.wlan = None
        self.pins = {}
        self.led = None
        self.wdt = None
        self.online = False
        self._offline_at = None
        self.joins = 0
        self.rejoins = 0
        self.clock_set = False
        self._t0 = time.ticks_ms()
        # The port's epoch, found rather than assumed (gmtime(0) is 2000 on ESP32/rp2, 1970 elsewhere).
        self._epoch_ms = _EPOCH_2000_MS if time.gmtime(0)[0] == 2000 else 0
        self._ntp_at = None
        self._name = None

    def _say(self, text):
        if self.log:
            self.log(text)

    # ---- port quirks (overridden per board) -------------------------------------
    def wlan_setup(self, wlan):
        """After active(True), before connect()."""

    def temperature_c(self):
        raise NotImplementedError

    # ---- status LED: on = server reachable, blinking = joining, off = offline ---
    def _led(self, on):
        if self.LED is None:
            return
        if self.led is None:
            self.led = machine.Pin(self.LED, machine.Pin.OUT)
        self.led.value(1 if on else 0)

    def _blink(self):
        self._led(time.ticks_ms() // 250 % 2)

    # ---- Wi-Fi -----------------------------------------------------------------
    async def connect_network(self):
        """Join the configured network, retrying with jittered back-off until it works, then
        set the clock from NTP (best effort: epoch_ms() stays None until it is set)."""
        fails = 0
        while not await self._join():
            fails += 1
            d = backoff(fails, 1000)
            self._say("wifi: retrying in %d ms" % d)
            await self._sleep(d)
        self.online = True
        self._led(True)
        self._sync_clock()

    async def _join(self, force=False):
        wlan = self.wlan
        if wlan is None:
            try:  # before the interface comes up, so DHCP announces it
                network.hostname(self.unique_name())
            except (OSError, ValueError):
                pass
            wlan = self.wlan = network.WLAN(network.WLAN.IF_STA)
        wlan.active(True)
        self.wlan_setup(wlan)
        if wlan.isconnected() and not force:
            return True
        if not self.ssid:
            self._say("wifi: no 'wifi': {'ssid', 'password'} in the config and the interface is not connected")
            return False
        # A connect() while an earlier attempt still runs fails on ESP32 ("Wifi Internal Error").
        wlan.disconnect()
        self.joins += 1
        self._say("wifi: joining %s" % self.ssid)
        wlan.connect(self.ssid, self.password)
        t0 = time.ticks_ms()
        st = wlan.status()
        while time.ticks_diff(time.ticks_ms(), t0) < _JOIN_MS:
            st = wlan.status()
            if st == network.STAT_GOT_IP:
                self._say("wifi: connected, address %s" % wlan.ifconfig()[0])
                return True
            if st in self.FATAL:
                break
            self._blink()
            self._feed()
            await asyncio.sleep_ms(250)
        self._say("wifi: not connected (status %s)" % self.status_name(st))
        wlan.disconnect()
        return False

    def status_name(self, st):
        for name in ("STAT_IDLE", "STAT_CONNECTING", "STAT_WRONG_PASSWORD", "STAT_NO_AP_FOUND",
                     "STAT_CONNECT_FAIL", "STAT_GOT_IP", "STAT_BEACON_TIMEOUT", "STAT_ASSOC_FAIL",
                     "STAT_HANDSHAKE_TIMEOUT"):
            if getattr(network, name, None) == st:
                return "%s (%d)" % (name, st)
        return str(st)

    def _radio_off(self):
        self._led(False)
        self.online = False
        if self.wlan is not None:
            self.wlan.disconnect()
            self.wlan.active(False)

    # ---- the link supervisor's hooks (tbdevice/supervisor.py; DESIGN §4.6, §5) --------
    # "Online" is the supervisor's view: the server answered (a datagram, a CoAP ping), not
    # isconnected(); over HTTP, which has no cheap probe, the association is all it sees.
    def tick(self, online):
        """At least once a second: the watchdog (started by the first call), the LED, the
        clock, and the last resort of resetting after RESET_MS offline."""
        if self.wdt is None:
            self.wdt = machine.WDT(timeout=self.WDT_MS)
        self._feed()
        now = time.ticks_ms()
        if online:
            if not self.online:
                self._say("supervisor: server reachable")
            self._offline_at = None
            self._led(True)
        else:
            if self.online:
                self._say("supervisor: server unreachable")
            if self._offline_at is None:
                self._offline_at = now
            self._blink()
            if time.ticks_diff(now, self._offline_at) > self.RESET_MS:
                self._say("supervisor: offline for %d s, resetting" % (self.RESET_MS // 1000))
                self.reset()
        self.online = online
        if self._ntp_at is None or time.ticks_diff(now, self._ntp_at) >= (
                _NTP_EVERY_MS if self.clock_set else _NTP_RETRY_MS):
            self._sync_clock()

    def associated(self):
        return self.wlan is not None and self.wlan.isconnected()

    async def rejoin(self, force):
        """Rebuild the Wi-Fi link (force: even though still associated, the server being
        silent); True once associated again."""
        self.rejoins += 1
        if not await self._join(force=force):
            return False
        self._sync_clock()
        return True

    def _feed(self):
        if self.wdt is not None:
            self.wdt.feed()

    async def _sleep(self, ms):
        # Sleep in slices so the watchdog is fed while we wait.
        while ms > 0:
            self._feed()
            await asyncio.sleep_ms(min(ms, 1000))
            ms -= 1000

    # ---- time ------------------------------------------------------------------
    def _sync_clock(self):
        self._ntp_at = time.ticks_ms()
        try:
            import ntptime
        except ImportError:
            return
        try:
            ntptime.settime()  # sets the RTC to UTC; blocks at most ntptime.timeout (1 s)
        except (OSError, OverflowError, IndexError) as e:
            self._say("ntp: %r" % (e,))
            return
        if not self.clock_set:
            self._say("ntp: clock set")
        self.clock_set = True

    def epoch_ms(self):
        """Unix epoch milliseconds for client timestamps, or None until NTP has set the clock."""
        if not self.clock_set:
            return None
        return time.time_ns() // 1000000 + self._epoch_ms

    # ---- identity, sensors, pins, heap ------------------------------------------
    def unique_name(self):
        if self._name is None:
            import binascii

            self._name = "%s-%s" % (self.PREFIX, binascii.hexlify(machine.unique_id()).decode())
        return self._name

    def read_sensors(self):
        return {"temperature": round(self.temperature_c(), 1)}

    def pin_write(self, pin, value):
        p = self.pins.get(pin)
        if p is None:
            p = self.pins[pin] = machine.Pin(pin, machine.Pin.OUT)
        p.value(1 if value else 0)

    def pin_read(self, pin):
        p = self.pins.get(pin)
        if p is None:  # reading does not claim the pin as an output
            return machine.Pin(pin, machine.Pin.IN).value()
        return p.value()

    def free_heap(self):
        return gc.mem_free()

    def rssi(self):
        """Signal strength in dBm while associated (diagnostics telemetry), else None."""
        w = self.wlan
        if w is None or not w.isconnected():
            return None
        try:
            return w.status("rssi")
        except (OSError, ValueError, TypeError):
            return None

    def uptime_ms(self):
        return time.ticks_diff(time.ticks_ms(), self._t0)

    # ---- power ---------------------------------------------------------------
    def light_sleep(self, ms):
        """RAM kept, radio off; call connect_network() again after. Not with the watchdog
        running longer than WDT_MS (supervise() starts it; wake-report-sleep devices don't)."""
        self._radio_off()
        machine.lightsleep(ms)

    def deep_sleep(self, ms):
        """Everything off; the board boots again (main.py) after `ms`."""
        self._radio_off()
        machine.deepsleep(ms)

    def reset(self):
        machine.reset()
