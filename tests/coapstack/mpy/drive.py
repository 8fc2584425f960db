# Drives lib/coap on the MicroPython unix port from a JSON script (in the file argv[1];
# the unix-port launcher crashes on a command-line argument of 256 bytes or more) and prints one
# JSON line per step, then one with the client's counters. The pytest side
# (tests/coapstack/coapdrive.py) builds the script and asserts on the output.
#
# script: {"port": n, "host": "127.0.0.1", "client": {Client kwargs}, "steps": [step, ...]}
# steps:  {"op": "request", "method": "get", "path": "a/b", "query": [..], "payload": str,
#          "payload_hex": str, "options": [[num, int|str], ..], "con": true, "timeout_ms": n}
#         {"op": "concurrent", "requests": [request step, ...]}
#         {"op": "ping"}  {"op": "sleep", "ms": n}
#         {"op": "reopen", "request": request step, "after_ms": n}: the link dropped and opened again while it waits
#         {"op": "observe", "path": .., "ms": n, "cancel": true}
# "sched_internals": false runs the client with asyncio's public API only (lib/coap/sched.py).
import asyncio
import binascii
import json
import sys
import time

from coap import message as m
from coap import sched
from coap.client import Client, Route
from coap.errors import CoapError
from coap.observe import Observation

_METHODS = {"get": m.GET, "post": m.POST, "put": m.PUT, "delete": m.DELETE}


def hx(b):
    return binascii.hexlify(bytes(b)).decode()


def describe(msg, t0):
    return {
        "code": m.code_str(msg.code),
        "type": ("CON", "NON", "ACK", "RST")[msg.mtype],
        "mid": msg.mid,
        "token": hx(msg.token),
        "payload": hx(msg.payload),
        "len": len(msg.payload),
        "opts": [[n, hx(v)] for n, v in msg.options],
        "ms": time.ticks_diff(time.ticks_ms(), t0),
    }


def failure(e, t0):
    r = {"error": type(e).__name__, "msg": str(e), "ms": time.ticks_diff(time.ticks_ms(), t0)}
    if isinstance(e, OSError):
        r["errno"] = e.args[0]
    return r


async def request(cl, st):
    t0 = time.ticks_ms()
    payload = binascii.unhexlify(st["payload_hex"]) if "payload_hex" in st else st.get("payload", "").encode()
    opts = [tuple(o) for o in st.get("options", ())]
    try:
        msg = await cl.request(
            _METHODS[st.get("method", "get")],
            Route(st.get("path", ""), st.get("query", ())),
            payload,
            opts,
            st.get("con", True),
            st.get("timeout_ms"),
        )
        r = describe(msg, t0)
    except (CoapError, OSError) as e:
        r = failure(e, t0)
    r["id"] = st.get("id")
    return r


async def observe(cl, st):
    t0 = time.ticks_ms()
    got = []
    obs = Observation(cl, st["path"], lambda msg, initial=False: got.append(describe(msg, t0)), con=st.get("con", True))
    r = {}
    try:
        await obs.register()
        r["active"] = obs.active
        await asyncio.sleep_ms(st.get("ms", 1000))
        r["active_after"] = obs.active
        if st.get("cancel", True) and obs.active:
            c = await obs.cancel()
            r["cancel"] = None if c is None else describe(c, t0)
    except (CoapError, OSError) as e:
        r = failure(e, t0)
    r["notifications"] = got
    r["count"] = obs.notifications
    return r


async def step(cl, st):
    op = st.get("op", "request")
    if op == "request":
        return await request(cl, st)
    if op == "concurrent":
        return {"results": await asyncio.gather(*[request(cl, s) for s in st["requests"]])}
    if op == "ping":
        t0 = time.ticks_ms()
        ok = await cl.ping(st.get("timeout_ms"))
        return {"pong": ok, "ms": time.ticks_diff(time.ticks_ms(), t0)}
    if op == "sleep":
        await asyncio.sleep_ms(st["ms"])
        return {}
    if op == "reopen":
        # a request waiting while the link is dropped and opened again (the supervisor's re-open)
        t = asyncio.create_task(request(cl, st["request"]))
        await asyncio.sleep_ms(st.get("after_ms", 50))
        cl.drop()
        await cl.connect()
        return await asyncio.wait_for_ms(t, st.get("bound_ms", 20000))
    if op == "observe":
        return await observe(cl, st)
    raise ValueError("unknown op " + op)


async def main(script):
    sched.internals = script.get("sched_internals", True)
    cl = Client(script.get("host", "127.0.0.1"), script["port"], **script.get("client", {}))
    made = cl.last_rx
    while time.ticks_ms() == made:  # the next tick: a write of last_rx by connect() would show
        pass
    await cl.connect()
    try:
        for i, st in enumerate(script["steps"]):
            r = await step(cl, st)
            r["step"] = i
            print(json.dumps(r))
    finally:
        print(
            json.dumps(
                {
                    "counters": {
                        "sent": cl.sent,
                        "received": cl.received,
                        "retransmissions": cl.retransmissions,
                        "duplicates": cl.duplicates,
                        "rejected": cl.rejected,
                        "oversized": cl.oversized,
                    },
                    "rx_error": None if cl.rx_error is None else str(cl.rx_error),
                    "rx_alive": cl._rx_task is not None and not cl._rx_task.done(),
                    "heard": time.ticks_diff(cl.last_rx, made) > 0,  # anything received since the Client was made
                }
            )
        )
        await cl.close()


with open(sys.argv[1]) as f:
    _script = json.loads(f.read())
asyncio.run(main(_script))
