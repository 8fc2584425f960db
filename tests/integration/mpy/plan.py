# Runs a list of Device API calls on the unix port and prints one JSON line per call:
#   micropython plan.py '{"host":..,"port":..,"token":..,"ops":[["telemetry",{...}], ...]}'
#   (or plan.py @spec.json); "payload": "protobuf" with "proto": <schema module> uses ProtoCodec.
import asyncio
import json
import sys
import time

from coap.client import Client
from tbdevice.coaplink import CoapLink  # noqa: F401 (compiled first, while the heap is empty)
from tbdevice.device import Device
from tbdevice.provision import provision


def _odd(x):
    # Values JSON cannot write, for the tests of issue 15 item 7: {"$object": 0} is an
    # object(), {"$bytes": "ab"} is b"ab".
    if isinstance(x, dict):
        if "$object" in x:
            return object()
        if "$bytes" in x:
            return x["$bytes"].encode()
        return {k: _odd(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_odd(v) for v in x]
    return x


async def main(spec):
    client = Client(spec["host"], spec["port"], **spec.get("coap", {}))
    codec = None
    if spec.get("payload") == "protobuf":
        import gc

        gc.collect()  # (the protobuf modules are compiled from source here: a big transient heap)
        from tbdevice.protocodec import ProtoCodec

        codec = ProtoCodec(spec.get("proto"))
    dev = Device(spec["host"], spec.get("token") or "none", client=client, clock=None, codec=codec)
    await dev.connect()
    for op in spec["ops"]:
        name, args = op[0], _odd(op[1:])
        out = {"op": name}
        try:
            if name in ("telemetry", "attributes"):
                # "at": where an error came from: the call (a value the codec cannot encode) or the await
                out["at"] = "call"
                aw = dev.send_telemetry(*args) if name == "telemetry" else dev.send_attributes(*args)
                out["at"] = "await"
                out["result"] = await aw
            elif name == "request":
                out["result"] = await dev.request_attributes(*args)
            elif name == "rpc":
                out["result"] = await dev.call_rpc(*args)
            elif name == "claim":
                out["result"] = await dev.claim(*args)
            elif name == "provision":
                out["result"] = await provision(client, *args, codec=codec)
            elif name == "sleep":
                await asyncio.sleep_ms(args[0])
            out["ok"] = True
        except Exception as e:  # report every outcome to the test, then go on
            out["ok"] = False
            out["error"] = type(e).__name__
            out["message"] = str(e)
            out["code"] = getattr(e, "code", None)
            out["status"] = getattr(e, "status", None)
        print(json.dumps(out))
    await dev.close()


# An argument of 256 bytes or more crashes this unix port ("FATAL: uncaught NLR"): "@file" reads the spec.
arg = sys.argv[1]
if arg.startswith("@"):
    with open(arg[1:]) as f:
        arg = f.read()
asyncio.run(main(json.loads(arg)))
