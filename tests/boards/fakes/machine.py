# A stand-in for a board's machine module on the unix port (tests/boards/test_hal_fakes.py).
log = []


class Pin:
    OUT = 1
    IN = 0
    levels = {}

    def __init__(self, pin, mode=-1):
        self.pin = pin
        self.mode = mode

    def value(self, v=None):
        if v is None:
            return Pin.levels.get(self.pin, 0)
        Pin.levels[self.pin] = v


class ADC:
    def __init__(self, ch):
        self.ch = ch

    def read_u16(self):
        return 14000  # 0.705 V: about 27.6 C on the RP2040 sensor


class WDT:
    def __init__(self, timeout=5000):
        log.append(("wdt", timeout))
        self.fed = 0

    def feed(self):
        self.fed += 1


def unique_id():
    return b"\x24\x0a\xc4\x12\x34\x56"


def reset():
    log.append(("reset",))
    raise SystemExit(75)


def lightsleep(ms):
    log.append(("lightsleep", ms))


def deepsleep(ms):
    log.append(("deepsleep", ms))
