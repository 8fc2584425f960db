# The Device API over MQTT(S) on the unix port, for tests/integration/test_mqtt_device.py.
#   micropython mqtt_device.py SPEC.json, the file holding {"host":..,"port":..,"transport":"mqtt"|"mqtts",
#   "token":..,"mqtt":{client_id, username, password, keepalive_s, timeout_ms},"ca","cert","key",
#   "subscribe":bool,"keepalive_ms":N,"payload":"protobuf","proto":<schema module>,"ops":[[name, args..], ..]}
# (a file: this unix-port build aborts on a command-line argument longer than 255 bytes).
# Prints one JSON line per event: {"ev":"ready"} once subscribed (with "subscribe"), {"ev":"attrs",
# "changed","deleted"} per shared-attribute change, {"ev":"rpc",..} per RPC handled, {"ev":"op",..}
# per operation, {"ev":"log","text"} per log line, {"ev":"end",..} last. Ops that wait for the test:
# ["wait_file", path] (until the test creates it), ["reconnects", n] (until Device.reconnects >= n).
import asyncio
import hashlib
import json
import os
import sys

from tbdevice.device import Device
from tbdevice.mqttlink import MqttLink
from tbdevice.provision import provision


def _odd(x):
    # Values JSON cannot write: {"$object": 0} is an object() (issue 15 item 7).
    if isinstance(x, dict):
        if "$object" in x:
            return object()
        return {k: _odd(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_odd(v) for v in x]
    return x


def emit(**ev):
    print(json.dumps(ev))


def hexdigest(h):
    return "".join("%02x" % b for b in h.digest())


def tls_context(spec):
    from tbdevice.mqttconn import tls_context as ctx

    def read(k):
        if not spec.get(k):
            return None
        with open(spec[k], "rb") as f:
            return f.read()

    return ctx(read("ca"), read("cert"), read("key"))


async def until(cond, ms=30000):
    while not cond():
        ms -= 20
        if ms < 0:
            raise OSError(110, "timed out waiting")
        await asyncio.sleep_ms(20)


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


async def op(dev, link, name, args, out):
    if name in ("telemetry", "attributes"):
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
        return await provision(dev, *args, codec=dev.codec)
    if name == "set_token":
        dev.set_token(args[0])
        return None
    if name == "firmware":  # kind, title, version, size, chunk size, offset: sha256 of what data() got
        kind, title, version, size, chunk, offset = args
        h = hashlib.sha256()
        got = [0, 0]

        async def data(mv):
            h.update(mv)
            got[0] += len(mv)
            got[1] += 1

        await link.download(kind, {"title": title, "version": version, "size": size}, offset, data, "chunk", chunk)
        return {"bytes": got[0], "pieces": got[1], "sha256": hexdigest(h)}
    if name == "wait_file":
        emit(ev="waiting", path=args[0])
        await until(lambda: exists(args[0]), 60000)
        return None
    if name == "reconnects":
        await until(lambda: dev.reconnects >= args[0])
        return dev.reconnects
    if name == "until_ok":  # [timeout_ms, op, args..]: the op again every 200 ms until it works
        ms = args[0]
        while True:
            try:
                return await op(dev, link, args[1], args[2:], out)
            except Exception as e:  # the test wants the first success; a late one shows as the last error
                ms -= 200
                if ms < 0:
                    raise
                out["retried"] = out.get("retried", 0) + 1
                await asyncio.sleep_ms(200)
    if name == "stats":
        return link.stats()
    raise ValueError("unknown op " + name)


async def main(spec):
    log = lambda text: emit(ev="log", text=text)  # noqa: E731
    tls = tls_context(spec) if spec.get("transport") == "mqtts" else None
    m = spec.get("mqtt", {})
    link = MqttLink(spec["host"], spec["port"], tls=tls, log=log, x509=bool(spec.get("cert")), **m)
    codec = None
    if spec.get("payload") == "protobuf":
        from tbdevice.protocodec import ProtoCodec

        codec = ProtoCodec(spec.get("proto"))
    dev = Device(spec["host"], spec.get("token"), link=link, log=log, codec=codec)
    await dev.connect()
    if spec.get("subscribe"):
        dev.on_attributes(lambda changed, deleted: emit(ev="attrs", changed=changed, deleted=deleted))

        def echo(params):
            emit(ev="rpc", method="echo", params=params)
            return params

        def boom(params):
            emit(ev="rpc", method="boom", params=params)
            raise ValueError("boom")

        dev.on_rpc("echo", echo)
        dev.on_rpc("boom", boom)
        dev.on_attribute("crash_key", lambda v: 1 / 0)
        dev.subscribe(keepalive_ms=spec.get("keepalive_ms", 30000))
        dev.supervisor.ping_timeout_ms = spec.get("ping_timeout_ms", 10000)
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
    emit(ev="end", reconnects=dev.reconnects, stats=link.stats(),
         shared=dev.shared if spec.get("subscribe") else None)
    await dev.close()


with open(sys.argv[1]) as f:
    asyncio.run(main(json.load(f)))
