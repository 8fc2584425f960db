# The RPI_PICO_W board (Raspberry Pi Pico W, RP2040 + CYW43439): Wi-Fi with power management
# off while connected, the on-board LED (wired to the CYW43, hence Pin("LED")), the RP2040's
# temperature sensor on ADC 4. Everything shared with the ESP32 is in wifihal.py.
import machine
import network

from wifihal import WifiHal

NAME = "RPI_PICO_W"

# Power management off (Raspberry Pi, "Connecting to the Internet with Raspberry Pi Pico W"):
# with the CYW43's default power saving the Pico W misses datagrams (CoAP responses and
# notifications arrive late or not at all) while the radio dozes.
_PM_OFF = 0xA11140


class Hal(WifiHal):
    NAME = NAME
    PREFIX = "picow"
    LED = "LED"
    WDT_MS = 8000  # the RP2040 watchdog's maximum is 8388 ms

    def __init__(self, cfg, log=print):
        super().__init__(cfg, log)
        # cyw43 link states as network.STAT_*: these end an attempt early.
        self.FATAL = (network.STAT_WRONG_PASSWORD, network.STAT_NO_AP_FOUND, network.STAT_CONNECT_FAIL)
        self.adc = None

    def wlan_setup(self, wlan):
        wlan.config(pm=_PM_OFF)

    def temperature_c(self):
        # RP2040 datasheet §4.9.5: T = 27 - (V - 0.706) / 0.001721, V from the 16-bit reading at 3.3 V.
        if self.adc is None:
            self.adc = machine.ADC(4)
        v = self.adc.read_u16() * 3.3 / 65535
        return 27 - (v - 0.706) / 0.001721
