# The ESP32_GENERIC board (ESP32-WROOM/-WROVER DevKits on stock MicroPython): Wi-Fi, LED on
# GPIO2 (DOIT DevKit v1 and most clones; change LED for yours), the MCU's own temperature
# sensor. Everything shared with the Pico W is in wifihal.py.
import network

from wifihal import WifiHal

NAME = "ESP32_GENERIC"


class Hal(WifiHal):
    NAME = NAME
    PREFIX = "esp32"
    LED = 2
    WDT_MS = 15000  # ESP32 takes any timeout >= 1 s; DNS on lwIP can block several seconds

    def __init__(self, cfg, log=print):
        super().__init__(cfg, log)
        # ESP32 status codes (network.STAT_*, 2xx from the IDF's disconnect reasons) after
        # which this attempt will not succeed by waiting: disconnect and back off.
        self.FATAL = (network.STAT_WRONG_PASSWORD, network.STAT_NO_AP_FOUND, network.STAT_CONNECT_FAIL,
                      network.STAT_BEACON_TIMEOUT, network.STAT_HANDSHAKE_TIMEOUT)

    def wlan_setup(self, wlan):
        # The IDF would otherwise keep re-associating on its own while the supervisor does
        # too, and a connect() during its attempt fails: one owner of the link (DESIGN §4.6).
        wlan.config(reconnects=0)

    def temperature_c(self):
        import esp32

        # ESP32-S2/S3/C3 have mcu_temperature() (Celsius); the original ESP32 only
        # raw_temperature(), in Fahrenheit. Feature-detect rather than test the chip.
        mcu = getattr(esp32, "mcu_temperature", None)
        if mcu is not None:
            return mcu()
        return (esp32.raw_temperature() - 32) / 1.8
