# The tbdevice cases (a module of their own: only what a case needs is loaded, so the
# harness takes as little heap as it can from the stack under test).
#   device / devnon / devproto / http / httpproto / mqtt: telemetry through Device.send_telemetry
#   attr / rpc: a notification received and dispatched (from bench/notifier.py)
import asyncio

from bm_common import HOST, TOKEN, VALUES, ameasure


async def run(case, port, metric, n, warm):
    if case in ("device", "devnon", "devproto", "http", "httpproto", "mqtt"):
        # Telemetry through Device.send_telemetry: CoAP CON (device), CoAP NON (devnon),
        # CoAP CON with the default protobuf profile (devproto), HTTP with JSON (http) or
        # protobuf (httpproto) through tbdevice.httplink on one kept-alive connection.
        from tbdevice.device import Device

        codec = None
        if case.endswith("proto"):
            from tbdevice.protocodec import ProtoCodec

            codec = ProtoCodec()
        if case == "mqtt":
            # MQTT 3.1.1, PUBLISH at QoS 1 answered by a PUBACK (bench/mqttresponder.py)
            from tbdevice.mqttlink import MqttLink

            dev = Device(HOST, TOKEN, link=MqttLink(HOST, port, TOKEN), codec=codec)
        elif case.startswith("http"):
            from tbdevice.httplink import HttpLink

            dev = Device(HOST, TOKEN, link=HttpLink(HOST, port, TOKEN), codec=codec)
        else:
            dev = Device(HOST, TOKEN, port=port, con=case != "devnon", codec=codec)
        await dev.connect()

        async def loop(k):
            for _ in range(k):
                await dev.send_telemetry(VALUES)

    elif case in ("attr", "rpc"):
        # A notification received and dispatched (bench/notifier.py sends one at a time):
        # an attribute update through tbdevice.downlink to an on_attributes callback, or an
        # RPC request to its handler, whose result is posted back (rpc/<id>).
        from tbdevice.device import Device

        dev = Device(HOST, TOKEN, port=port, con=True)
        got = [0]
        ev = asyncio.Event()

        def seen(*args):
            got[0] += 1
            ev.set()
            return args[0]

        if case == "attr":
            dev.on_attributes(seen)
        else:
            dev.on_rpc("setGpio", seen)
        await dev.connect()
        dev.subscribe()

        async def loop(k):
            # The notifier sends the next notification once this one is ACKed (attr) or
            # replied to (rpc): at most one in flight, counted as its handler runs.
            target = got[0] + k
            while got[0] < target:
                ev.clear()
                await ev.wait()

    else:
        raise SystemExit("unknown case " + case)
    res = {}
    await ameasure(loop, metric, n, warm, res)
    cl = getattr(dev.link, "client", None)
    if cl is not None and cl.nomem:
        res["nomem"] = cl.nomem  # reads that found no heap: the heap is too small for the case
    if case == "rpc" and metric == "count":
        await asyncio.sleep_ms(20)  # the last reply's POST and its ACK (in the runs with N and 0 alike)
    return res
