# Device.close() after subscribe() on the unix port, for tests/integration/test_close.py:
#   micropython close.py '{"host":..,"port":..,"token":..,"coap":{..}}'
# Prints {"ev":"ready"} once both subscriptions are up, then reads one line from stdin (the host
# test may cut the server off meanwhile), closes the device and prints {"ev":"closed","ms":..}.
import asyncio
import json
import sys
import time

from tbdevice.device import Device


async def main(spec):
    dev = Device(spec["host"], spec["token"], port=spec["port"], **spec.get("coap", {}))
    await dev.connect()
    dev.subscribe(300000, 0)
    while not dev.downlink.subscribed:
        await asyncio.sleep_ms(20)
    print(json.dumps({"ev": "ready"}))
    sys.stdin.readline()
    t0 = time.ticks_ms()
    await dev.close()
    print(json.dumps({"ev": "closed", "ms": time.ticks_diff(time.ticks_ms(), t0)}))


asyncio.run(main(json.loads(sys.argv[1])))
