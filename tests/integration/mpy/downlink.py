# A subscribed Device on the unix port for tests/integration/test_downlink.py; prints one
# JSON line per event and runs until killed (or for "run_ms"):
#   micropython downlink.py '{"host":..,"port":..,"token":..,"silence_ms":..,"keepalive_ms":..}'
# Events: {"ev":"ready"} once subscribed, {"ev":"attr","key","value"} per key callback,
# {"ev":"attrs","changed","deleted"} per catch-all callback, {"ev":"run","method","params"}
# each time a handler actually runs, {"ev":"log","text"} for the device's own log lines.
# "transport": "http" runs the same over HttpLink (long polls; "poll_ms").
# Callbacks that raise, for the tests of issue 15 item 1: on_attribute("crash_key") always,
# the async on_attribute("crash_async") always, an on_attributes callback when "crash_all" changed, RPC methods "fail" (plain) and
# "failAsync" (async).
import asyncio
import json
import os
import sys
import time

from coap.client import Client
from coap.observe import Observation  # noqa: F401 (compiled first, while the heap is empty)
from tbdevice.coaplink import CoapLink  # noqa: F401
from tbdevice.device import Device


def emit(**ev):
    print(json.dumps(ev))


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


async def main(spec):
    log = lambda text: emit(ev="log", text=text)  # noqa: E731
    if spec.get("transport") == "http":
        from tbdevice.httplink import HttpLink  # only then: the 128K heap compiles from source

        link = HttpLink(spec["host"], spec["port"], log=log, poll_ms=spec.get("poll_ms", 20000))
        dev = Device(spec["host"], spec["token"], link=link, log=log)
    else:
        client = Client(spec["host"], spec["port"], **spec.get("coap", {}))
        dev = Device(spec["host"], spec["token"], client=client, con=spec.get("con", True), log=log)
    runs = {}

    def ran(method, params):
        runs[method] = runs.get(method, 0) + 1
        emit(ev="run", method=method, params=params)

    def echo(params):
        ran("echo", params)
        return params

    def fail(params):
        ran("fail", params)
        raise ValueError("boom")

    async def fail_async(params):
        ran("failAsync", params)
        await asyncio.sleep_ms(1)
        return 1 // 0

    async def crash_async(value):
        await asyncio.sleep_ms(1)
        raise KeyError("async boom")

    def crash_all(changed, deleted):
        if "crash_all" in changed:
            raise RuntimeError("catch-all boom")

    async def slow(params):
        # Runs params["ms"] ms; with params["until"] (a file's path), ends as soon as that file
        # exists: the test makes it once the server has re-sent this RPC to the device.
        ran("slow", params)
        t0 = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), t0) < params["ms"]:
            if "until" in params and exists(params["until"]):
                break
            await asyncio.sleep_ms(20)
        return {"slow": params["ms"]}

    def state(params):
        dl = dev.downlink
        return {"shared": dev.shared, "runs": runs, "repeats": dl.rpc.repeats, "reconnects": dev.reconnects,
                "pings": dev.supervisor.pings, "failures": dl.failures}

    for name in spec.get("keys", ()):
        dev.on_attribute(name, lambda v, k=name: emit(ev="attr", key=k, value=v))
    dev.on_attribute("crash_key", lambda v: 1 / 0)
    dev.on_attribute("crash_async", crash_async)
    dev.on_attributes(crash_all)  # before the one that reports: a raising callback must not hide the next
    dev.on_attributes(lambda changed, deleted: emit(ev="attrs", changed=changed, deleted=deleted))
    dev.on_rpc("echo", echo)
    dev.on_rpc("fail", fail)
    dev.on_rpc("failAsync", fail_async)
    dev.on_rpc("slow", slow)
    dev.on_rpc("state", state)
    await dev.connect()
    dev.subscribe(spec.get("silence_ms", 300000), spec.get("keepalive_ms", 30000))
    while not dev.downlink.subscribed:
        await asyncio.sleep_ms(20)
    emit(ev="ready")
    await asyncio.sleep_ms(spec.get("run_ms", 600000))
    await dev.close()


asyncio.run(main(json.loads(sys.argv[1])))
