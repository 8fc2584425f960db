# The DTLS handshake must not block the event loop (issue 15 item 10): a ticker task runs every
# 10 ms while Client.connect() handshakes; prints {"ok" or "error", "ms", "max_gap_ms", "ticks"}
# (the ticker's longest gap and how often it ran, during connect()).
#   micropython dtls_loop.py HOST PORT CA
import asyncio
import json
import sys
import time

from coap.client import Client
from coap.dtls import DtlsTransport


async def main(host, port, ca):
    gaps = [0, 0, time.ticks_ms()]  # longest gap, ticks, last tick

    async def ticker():
        while True:
            await asyncio.sleep_ms(10)
            now = time.ticks_ms()
            gaps[0] = max(gaps[0], time.ticks_diff(now, gaps[2]))
            gaps[1] += 1
            gaps[2] = now

    t = asyncio.create_task(ticker())
    await asyncio.sleep_ms(30)
    cl = Client(host, port, transport=DtlsTransport(host, port, ca=ca))
    out = {}
    t0 = gaps[2] = time.ticks_ms()
    gaps[0] = gaps[1] = 0  # counted from here
    try:
        await cl.connect()
    except OSError as e:
        out["error"] = e.args[0]
    out["ms"] = time.ticks_diff(time.ticks_ms(), t0)
    out["max_gap_ms"] = max(gaps[0], time.ticks_diff(time.ticks_ms(), gaps[2]))
    out["ticks"] = gaps[1]
    if "error" not in out:
        out["ok"] = await cl.ping(3000)
    t.cancel()
    print(json.dumps(out))


asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
