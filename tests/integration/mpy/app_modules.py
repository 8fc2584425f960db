# The reference app (firmware/app.py) started on the unix port with a config, until it has reported
# once and subscribed; then prints {"modules": [...]} (sys.modules) and stops. For
# tests/integration/test_mqtt_firmware.py: the MQTT modules load only for an MQTT config.
#   micropython app_modules.py CONFIG.json
import asyncio
import json
import sys

import config
import hal
from app import App


async def main(path):
    cfg = config.load(path)
    app = App(cfg, hal.Hal(cfg), log=None)
    await app.start()
    while app.sent < 1 or not app.device.downlink.subscribed:
        await asyncio.sleep_ms(20)
    print(json.dumps({"modules": sorted(sys.modules), "sent": app.sent}))
    await app.device.close()


asyncio.run(main(sys.argv[1]))
