# The device side of tools/ota-bench, on the unix port: one OTA download of an assigned sw_
# package through tbdevice.ota (the real state machine, fetch loop, checksum and file sink),
# printing one JSON line: bytes, milliseconds and, with heap=1, the heap in use (after a
# collection) sampled at every piece written, against the idle heap before the update.
# Mode "mqtt": over MQTT (tbdevice.mqttlink; port is tbsim's MQTT port), chunks on
# v2/sw/request/{id}/chunk/{n}; otherwise CoAP chunk or block2.
import asyncio
import gc
import json
import sys
import time

from tbdevice.device import Device
from tbdevice.ota import Ota
from tbdevice.otasink import FileSink

host, port, token, sd, mode, cs, title, version, size, alg, cks, heap = sys.argv[1:]
stats = [0, 0]  # peak heap in use, samples


class SampledSink(FileSink):
    def write(self, data):
        FileSink.write(self, data)
        if heap == "1":
            gc.collect()
            a = gc.mem_alloc()
            if a > stats[0]:
                stats[0] = a
            stats[1] += 1


async def main():
    if mode == "mqtt":
        from tbdevice.mqttlink import MqttLink

        dev = Device(host, token, link=MqttLink(host, int(port), token, timeout_ms=5000))
    else:
        dev = Device(host, token, port=int(port))
    await dev.connect()

    async def report(values):
        return True  # download only: no telemetry on the link while measuring

    sink = SampledSink(sd, "sw", bytearray(512))
    ota = Ota(dev, {"sw": lambda: sink}, {"sw": None}, sd, report, lambda: None, mode="chunk" if mode == "mqtt" else mode, chunk_size=int(cs),
              timeout_ms=5000, retry_ms=100)
    pkg = {"title": title, "version": version, "size": int(size), "checksum_algorithm": alg, "checksum": cks}
    # warm-up: the code paths and their first allocations, then the idle heap
    await ota._report({})
    gc.collect()
    idle = gc.mem_alloc()
    t0 = time.ticks_ms()
    await ota._job("sw", pkg)
    ms = time.ticks_diff(time.ticks_ms(), t0)
    print(json.dumps({"mode": mode, "chunk": int(cs), "bytes": int(size), "ms": ms, "idle": idle, "peak": stats[0],
                      "samples": stats[1], "error": ota.last_error}))
    await dev.close()


asyncio.run(main())
