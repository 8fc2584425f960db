# The Device API over HTTP(S) on the unix port, for tests/integration/test_http_device.py.
#   micropython http_device.py SPEC.json, the file holding {"host":..,"port":..,"transport":"http"|"https",
#   "ca":path,"token":..,"http":{..},"subscribe":bool,"ops":[[name, args..], ..],"run_ms":N}
# (a file: this unix-port build aborts on a command-line argument longer than 255 bytes).
# Prints one JSON line per event: {"ev":"ready"} once both long polls are out (with
# "subscribe"), {"ev":"attrs","changed","deleted"} per shared-attribute change, {"ev":"rpc",..}
# per RPC handled, {"ev":"op",..} per operation, {"ev":"log","text"}, and {"ev":"end",..}.
import asyncio
import hashlib
import json
import sys

from httpclient.client import tls_context
from tbdevice.device import Device
from tbdevice.httplink import HttpLink
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


def emit(**ev):
    print(json.dumps(ev))


def hexdigest(h):
    return "".join("%02x" % b for b in h.digest())


async def op(dev, link, name, args, out):
    if name in ("telemetry", "attributes"):
        # "at": where an error came from: the call (a value the codec cannot encode) or the await
        out["at"] = "call"
        aw = dev.send_telemetry(*args) if name == "telemetry" else dev.send_attributes(*args)
        out["at"] = "await"
        return await aw
    if name == "request":
        return await dev.request_attributes(*args)
    if name == "rpc":
        return await dev.call_rpc(*args)
    if name == "claim":
        return await dev.claim(*args)
    if name == "provision":
        return await provision(link, *args)
    if name == "firmware":  # title, version, chunk size: the whole package by chunks
        title, version, size = args
        h = hashlib.sha256()
        n = chunks = 0
        while True:
            data = await link.fetch_firmware(title, version, size, chunks)
            chunks += 1
            h.update(data)
            n += len(data)
            if len(data) < size:
                return {"bytes": n, "chunks": chunks, "sha256": hexdigest(h)}
    if name == "sleep":
        await asyncio.sleep_ms(args[0])
        return None
    raise ValueError("unknown op " + name)


async def main(spec):
    tls = None
    if spec.get("transport") == "https":
        with open(spec["ca"], "rb") as f:
            tls = tls_context(f.read())
    log = lambda text: emit(ev="log", text=text)  # noqa: E731
    link = HttpLink(spec["host"], spec["port"], tls=tls, log=log, **spec.get("http", {}))
    dev = Device(spec["host"], spec.get("token") or "none", link=link, log=log)
    await dev.connect()
    if spec.get("subscribe"):
        dev.on_attributes(lambda changed, deleted: emit(ev="attrs", changed=changed, deleted=deleted))

        def echo(params):
            emit(ev="rpc", method="echo", params=params)
            return params

        dev.on_rpc("echo", echo)
        dev.subscribe()
        while not dev.downlink.subscribed:
            await asyncio.sleep_ms(20)
        emit(ev="ready")
    for o in spec.get("ops", ()):
        out = {"ev": "op", "op": o[0]}
        try:
            out["result"] = await op(dev, link, o[0], _odd(o[1:]), out)
            out["ok"] = True
        except Exception as e:  # report every outcome to the test, then go on
            out["ok"] = False
            out["error"] = type(e).__name__
            out["message"] = str(e)
            out["code"] = getattr(e, "code", None)
            out["status"] = getattr(e, "status", None)
        emit(**out)
    if spec.get("run_ms"):
        await asyncio.sleep_ms(spec["run_ms"])
    emit(ev="end", polls=link.polls, connects=link._conn.connects, shared=dev.shared if spec.get("subscribe") else None)
    await dev.close()


with open(sys.argv[1]) as f:
    asyncio.run(main(json.load(f)))
