# Runs on the unix port with tests/boards/fakes first on the path (fake machine, network,
# ntptime, esp32): the Wi-Fi boards' HAL logic without a board. Prints "ok <name>" per check.
import asyncio
import sys
import time

import machine
import network
import ntptime

BOARD = sys.argv[1]
hal_mod = __import__("hal")
CFG = {"wifi": {"ssid": "lab", "password": "pw"}, "state_dir": ".", "log": True}
lines = []


def check(name, cond, *info):
    print(("ok " if cond else "FAIL ") + name, *info)


async def main():
    h = hal_mod.Hal(CFG, log=lines.append)
    check("epoch none before ntp", h.epoch_ms() is None)
    # one association that needs a few polls
    network.script[:] = [[network.STAT_CONNECTING, network.STAT_CONNECTING, network.STAT_GOT_IP]]
    await h.connect_network()
    check("online after join", h.online and h.joins == 1, lines)
    check("hostname is the unique name", network.names[-1] == h.unique_name())
    check("unique name", h.unique_name() == h.PREFIX + "-240ac4123456", h.unique_name())
    quirk = [c for c in network.calls if c[0] == "config"]
    if BOARD == "RPI_PICO_W":
        check("pm off", quirk and quirk[-1][1] == {"pm": 0xA11140}, quirk)
    else:
        check("reconnects off", quirk and quirk[-1][1] == {"reconnects": 0}, quirk)
    # the unix port's epoch is 1970: no offset; a board's is 2000 (the HAL finds out with gmtime(0))
    check("clock set by ntp", h.clock_set and abs(h.epoch_ms() - time.time() * 1000) < 5000, h.epoch_ms())
    t = h.read_sensors()["temperature"]
    check("temperature", 20 < t < 60, t)
    h.pin_write(5, 1)
    check("pins", h.pin_read(5) == 1 and machine.Pin.levels[5] == 1)
    # a wrong password ends the attempt early (not after 20 s) and is named in the log
    network.script[:] = [[network.STAT_CONNECTING, network.STAT_WRONG_PASSWORD]]
    h.wlan.disconnect()
    t0 = time.ticks_ms()
    ok = await h._join()
    check("wrong password fails fast", not ok and time.ticks_diff(time.ticks_ms(), t0) < 3000)
    check("status named", any("STAT_WRONG_PASSWORD" in x for x in lines), lines[-1:])

    # supervision through the hooks (tbdevice/supervisor.py): the server silent and the ping
    # unanswered twice -> the Wi-Fi link is rebuilt; the watchdog is fed meanwhile
    from tbdevice.supervisor import Supervisor

    class Link:
        token = "t"
        ended = None
        pings = 0
        opens = 0
        t0 = time.ticks_ms()

        async def open(self):
            self.opens += 1

        def drop(self):
            pass

        def heard(self):
            return self.t0  # never again after the start

        async def probe(self, timeout_ms):
            self.pings += 1
            return False

    network.script[:] = [[network.STAT_GOT_IP], [network.STAT_GOT_IP]]
    await h._join()
    joins = h.joins
    link = Link()
    sup = Supervisor(link, lines.append)
    sup.keepalive_ms = 1  # probe at once, and again at once
    await sup.open()
    sup.start(h)
    for _ in range(600):  # until the network is rebuilt (the event), 60 s at most
        await asyncio.sleep_ms(100)
        if h.rejoins:
            break
    await sup.stop()
    check("watchdog started and fed", h.wdt is not None and h.wdt.fed > 0 and ("wdt", h.WDT_MS) in machine.log)
    check("probed with pings", link.pings >= 2, link.pings)
    check("re-opened the link", link.opens >= 2 and sup.generation >= 2, link.opens)
    check("rebuilt the network", h.rejoins >= 1 and h.joins > joins, h.rejoins, h.joins)
    check("said unreachable", "supervisor: server unreachable" in lines, lines[-5:])
    h.deep_sleep(1000)
    check("deep sleep", machine.log[-1] == ("deepsleep", 1000) and not h.wlan.up)


asyncio.run(main())
