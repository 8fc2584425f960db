# The device side of `tools/min-heap lib` (MicroPython): the library alone, as a user's own
# script would use it. tbdevice.device.Device connects, then sends 50 telemetry messages one
# after another (CON, JSON, each answered); nothing else is imported. Run from its .mpy (min-heap
# compiles it) with the library's .mpy from build/UNIX/lib on the path:
#
#   micropython -X heapsize=N -m min_heap_lib HOST PORT TOKEN
#
# Prints "lib: sent N" after each message and "lib: done" at the end.
import asyncio
import sys

from tbdevice.device import Device

N = 50


async def main(host, port, token):
    dev = Device(host, token, port=port)
    await dev.connect()
    for i in range(N):
        await dev.send_telemetry({"n": i, "temperature": 21.5, "humidity": 40.25})
        print("lib: sent", i + 1)
    await dev.close()
    print("lib: done")


asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
