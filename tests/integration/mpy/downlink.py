# A subscribed Device on the unix port for tests/integration/test_downlink.py; prints one
# JSON line per event and runs until killed (or for "run_ms"):
#   micropython downlink.py '{"host":..,"port":..,"token":..,"silence_ms":..,"keepalive_ms":..}'
# Events: {"ev":"ready"} once subscribed, {"ev":"attr","key","value"} per key callback,
# {"ev":"attrs","changed","deleted"} per catch-all callback, {"ev":"run","method","params"}
# each time a handler actually runs, {"ev":"log","text"} for the device's own log lines.
import asyncio
import json
import sys

from coap.client import Client
from coap.observe import Observation  # noqa: F401 (compiled first, while the heap is empty)
from tbdevice.coaplink import CoapLink  # noqa: F401
from tbdevice.device import Device


def emit(**ev):
    print(json.dumps(ev))


async def main(spec):
    client = Client(spec["host"], spec["port"], **spec.get("coap", {}))
    dev = Device(spec["host"], spec["token"], client=client, con=spec.get("con", True),
                 log=lambda text: emit(ev="log", text=text))
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

    async def slow(params):
        ran("slow", params)
        await asyncio.sleep_ms(params["ms"])
        return {"slow": params["ms"]}

    def state(params):
        dl = dev.downlink
        return {"shared": dev.shared, "runs": runs, "repeats": dl.rpc.repeats, "reconnects": dev.reconnects,
                "pings": dev.supervisor.pings}

    for name in spec.get("keys", ()):
        dev.on_attribute(name, lambda v, k=name: emit(ev="attr", key=k, value=v))
    dev.on_attributes(lambda changed, deleted: emit(ev="attrs", changed=changed, deleted=deleted))
    dev.on_rpc("echo", echo)
    dev.on_rpc("fail", fail)
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
