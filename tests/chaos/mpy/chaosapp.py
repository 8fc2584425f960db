# The reference app (firmware/app.py) on the unix port for the chaos tests, given a JSON
# spec file: {"cfg": config, "samples": N, "wifi_drop_at": k}. Every sample is numbered
# (telemetry key "seq") and logged as "sample <seq> <ts>" so the test can compare what was
# taken with what the server stored. After N samples the sampler takes no more.
# With the ESP32_GENERIC/RPI_PICO_W board (tests/boards/fakes first on MICROPYPATH), sample
# k drops the fake Wi-Fi association ("wifi down"); the supervisor's re-join succeeds on its
# third attempt ("wifi up"). The test blacks the proxy out in between.
import asyncio
import gc
import json
import sys

import config

with open(sys.argv[1]) as f:
    SPEC = json.load(f)
CFG = config.validate(SPEC["cfg"])
N = SPEC.get("samples", 1 << 30)
DROP_AT = SPEC.get("wifi_drop_at")

import hal  # noqa: E402
from app import App  # noqa: E402


class ChaosApp(App):
    n = 0

    def take_sample(self):
        if self.n >= N:
            return None
        self.n += 1
        values = {"seq": self.n}
        values.update(self.hal.read_sensors())
        ts = self.forward.sample(values)
        print("sample", self.n, ts)
        if self.n == N:
            print("sampling done")
        if DROP_AT == self.n:
            drop_wifi(self.hal)
        return ts

    def chaos_stats(self, params):
        st = self.device.link.stats()
        gc.collect()
        return {"received": st["received"], "rejected": st["rejected"], "heap_used": gc.mem_alloc(),
                "queued": len(self.forward.queue), "sent": self.forward.sent}

    async def start(self):
        await super().start()
        self.device.on_rpc("chaosStats", self.chaos_stats)
        print("ready")


def drop_wifi(h):
    import network

    down = [True]
    status = network.WLAN.status

    def watched(self, param=None):
        st = status(self, param)
        if down[0] and st == network.STAT_GOT_IP:
            down[0] = False
            print("wifi up")
        return st

    network.WLAN.status = watched
    # Two attempts that find no access point, then one that joins.
    network.script[:] = [[network.STAT_CONNECTING, network.STAT_NO_AP_FOUND]] * 2 + [
        [network.STAT_CONNECTING, network.STAT_GOT_IP]]
    h.wlan.seq = [network.STAT_BEACON_TIMEOUT]
    print("wifi down")


app = ChaosApp(CFG, hal.Hal(CFG))
try:
    asyncio.run(app.run())
except KeyboardInterrupt:
    print("device: stopped (%d sent, %d failed)" % (app.sent, app.failed))
