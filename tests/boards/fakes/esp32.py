# A stand-in for MicroPython's esp32 module on the unix port: the sensor, and with tests/unit on
# the path and ESP32_FLASH naming a folder, esp32.Partition from tests/unit/esp32_double.py with
# its flash kept in that folder, so that the unix port's reset is a boot (the double's bootloader
# picks the partition to run). ESP32_OTA=1 gives the partition table OTA slots (a custom build);
# without it the table is stock MicroPython's (factory app only).
import os


def raw_temperature():
    return 122  # Fahrenheit, as the original ESP32 reports: 50 C


if os.getenv("ESP32_FLASH"):
    import esp32_double

    _double = esp32_double.make(ota=os.getenv("ESP32_OTA") == "1", app_size=int(os.getenv("ESP32_APP_SIZE") or 16384),
                                path=os.getenv("ESP32_FLASH"))
    Partition = _double.Partition
    print("esp32: running", _double.flash.running)
