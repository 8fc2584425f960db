# The UNIX board: the MicroPython unix port standing in for a board in tests and
# `make run`. The network is the host's; sensors and pins are simulated; state_dir
# stands in for flash.
import gc
import os
import random
import time

NAME = "UNIX"


class Hal:
    def __init__(self, cfg):
        self.cfg = cfg
        self.pins = {}
        self._t0 = time.ticks_ms()
        self._t = 21.5
        self._h = 40.25

    async def connect_network(self):
        return  # the host's network is already up

    # The link supervisor's hooks (tbdevice/supervisor.py): the host owns its network and
    # there is no watchdog, so there is nothing to do.
    rejoins = None  # (diagnostics: a Wi-Fi board counts its network rebuilds)

    def tick(self, online):
        return

    def associated(self):
        return True

    async def rejoin(self, force):
        return True

    def rssi(self):
        return None

    def epoch_ms(self):
        # The unix port's epoch is 1970 and its clock is the host's: always set.
        return time.time_ns() // 1000000

    def unique_name(self):
        # Stable per state_dir, like a board's MAC address: made once, kept.
        path = self.cfg["state_dir"] + "/device_id"
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            name = "unix-%08x" % random.getrandbits(32)
            with open(path, "w") as f:
                f.write(name)
            return name

    def read_sensors(self):
        # A slow random walk, rounded as a sensor would report it.
        self._t = min(35.0, max(5.0, self._t + (random.getrandbits(8) - 128) / 256))
        self._h = min(95.0, max(5.0, self._h + (random.getrandbits(8) - 128) / 128))
        return {"temperature": round(self._t, 2), "humidity": round(self._h, 2)}

    def pin_write(self, pin, value):
        self.pins[pin] = 1 if value else 0

    def pin_read(self, pin):
        return self.pins.get(pin, 0)

    def free_heap(self):
        return gc.mem_free()

    def uptime_ms(self):
        return time.ticks_diff(time.ticks_ms(), self._t0)

    def light_sleep(self, ms):
        # Like a board's machine.lightsleep(): everything stops (no task runs, nothing is
        # received) and RAM is kept. The socket stays open, so datagrams that arrive meanwhile
        # wait in the host's buffer and are read on waking, where a board's radio would be off.
        time.sleep_ms(ms)

    def reset(self):
        # A board resets; the unix port exits with the status tools/run-device takes as
        # "boot again" (a real reboot: the process and all its state are gone).
        import sys

        sys.exit(RESET_EXIT)


RESET_EXIT = 75
