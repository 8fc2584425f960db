# Benchmark client (MicroPython unix port), driven by bench/run.py.
#   micropython client.py <case> <port> <metric> <n> <warm>
# case: a way of sending the telemetry request of the benchmark (or one step of it):
#   raw       blocking socket: send a pre-encoded datagram, readinto a preallocated buffer
#   araw      the same through asyncio's IO queue (non-blocking socket, one task): the asyncio floor
#   exchange  coap.client.Client.exchange(POST, Route, payload bytes): message layer only
#   request   coap.client.Client.request(POST, Route, payload str): + block-wise checks, str->UTF-8
#   device    tbdevice.device.Device.send_telemetry(values): the full stack, JSON included
#   dumps / jsondumps / encode / decode / token / exobj / wait: single steps, no network
# metric:
#   count  run n messages after warm, nothing else (for callgrind: run n=N minus run n=0)
#   heap   gc.mem_alloc() delta over n messages with the GC disabled, after warm
#   rate   round trips per second over a window of about n ms, after warm messages
# Prints one line "RESULT <json>".
import gc
import json
import socket
import sys
import time

TOKEN = "A1b2C3d4E5f6G7h8I9j0"  # a 20-character access token, like ThingsBoard's
VALUES = {"temperature": 21.5, "humidity": 40.25}
HOST = "127.0.0.1"


def raw_request(payload):
    # The same datagram the stack sends, built once by hand (RFC 7252 §3): CON POST,
    # a 4-byte token, Uri-Path api / v1 / <token> / telemetry, payload. No Content-Format,
    # as the stack sends none.
    out = bytearray(b"\x44\x02\x12\x34\xa1\xb2\xc3\xd4")
    prev = 0
    for seg in ("api", "v1", TOKEN, "telemetry"):
        d = 11 - prev
        prev = 11
        ln = len(seg)
        if ln < 13:
            out.append((d << 4) | ln)
        else:
            out.append((d << 4) | 13)
            out.append(ln - 13)
        out.extend(seg.encode())
    out.append(0xFF)
    out.extend(payload)
    return bytes(out)


def payload_bytes():
    return json.dumps(VALUES, separators=(",", ":")).encode()


def addr(port):
    return socket.getaddrinfo(HOST, port)[0][-1]


# ---- blocking raw loop -------------------------------------------------------
def run_raw(port, metric, n, warm):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(addr(port))
    s.settimeout(5)  # a lost datagram ends the run with OSError instead of hanging it
    req = raw_request(payload_bytes())
    buf = bytearray(1280)
    res = {"req_len": len(req)}
    # readinto() on a blocking socket reads until it has as many bytes as asked for
    # (stream semantics, datagrams glued together), so ask for exactly the reply's size:
    # 4-byte header + the 4-byte token echoed, no options, no payload.
    rlen = 4 + (req[0] & 15)

    def loop(k):
        for _ in range(k):
            s.send(req)
            s.readinto(buf, rlen)

    measure(loop, metric, n, warm, res)
    if n + warm and (buf[1] != 65 or buf[0] & 0x30 != 0x20):
        raise SystemExit("raw: bad reply %r" % bytes(buf[:8]))
    s.close()
    return res


def measure(loop, metric, n, warm, res):
    # loop(k) sends k messages. Synchronous version of ameasure().
    if metric == "count":
        loop(warm + n)
    elif metric == "heap":
        loop(warm)
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        loop(n)
        b = gc.mem_alloc()
        gc.enable()
        res["heap_bytes"] = b - a
        res["n"] = n
    elif metric == "rate":
        loop(warm)
        k = 200
        while True:  # calibrate to a window of about n ms
            t = time.ticks_us()
            loop(k)
            dt = time.ticks_diff(time.ticks_us(), t)
            if dt > 50000:
                break
            k *= 2
        k = max(1, k * n * 1000 // dt)
        t = time.ticks_us()
        loop(k)
        dt = time.ticks_diff(time.ticks_us(), t)
        res["n"] = k
        res["us"] = dt
        res["rate"] = k * 1000000 / dt
    else:
        raise SystemExit("unknown metric " + metric)


async def ameasure(loop, metric, n, warm, res):
    # As measure(), for a coroutine loop(k).
    if metric == "count":
        await loop(warm + n)
    elif metric == "heap":
        await loop(warm)
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        await loop(n)
        b = gc.mem_alloc()
        gc.enable()
        res["heap_bytes"] = b - a
        res["n"] = n
    elif metric == "rate":
        await loop(warm)
        k = 200
        while True:
            t = time.ticks_us()
            await loop(k)
            dt = time.ticks_diff(time.ticks_us(), t)
            if dt > 50000:
                break
            k *= 2
        k = max(1, k * n * 1000 // dt)
        t = time.ticks_us()
        await loop(k)
        dt = time.ticks_diff(time.ticks_us(), t)
        res["n"] = k
        res["us"] = dt
        res["rate"] = k * 1000000 / dt
    else:
        raise SystemExit("unknown metric " + metric)


# ---- asyncio cases -------------------------------------------------------------
async def run_async(case, port, metric, n, warm):
    import asyncio

    res = {}
    if case == "araw":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(addr(port))
        s.setblocking(False)
        req = raw_request(payload_bytes())
        buf = bytearray(1280)
        wait = asyncio.core._io_queue.queue_read

        async def loop(k):
            for _ in range(k):
                s.send(req)
                while s.readinto(buf) is None:
                    yield wait(s)

    elif case == "exchange" or case == "request":
        from coap.client import Client, Route
        from coap import message as m

        c = Client(HOST, port)
        await c.connect()
        route = Route("api/v1/" + TOKEN + "/telemetry")
        if case == "exchange":
            body = payload_bytes()

            async def loop(k):
                for _ in range(k):
                    msg = await c.exchange(m.POST, route, body)
                    if msg.code != m.CREATED:
                        raise SystemExit("bad code %d" % msg.code)

        else:
            body = payload_bytes().decode()

            async def loop(k):
                for _ in range(k):
                    msg = await c.request(m.POST, route, body)
                    if msg.code != m.CREATED:
                        raise SystemExit("bad code %d" % msg.code)

    elif case == "device":
        from tbdevice.device import Device

        dev = Device(HOST, TOKEN, port=port, con=True)
        await dev.connect()

        async def loop(k):
            for _ in range(k):
                await dev.send_telemetry(VALUES)

    elif case == "wait":
        # One asyncio.wait_for_ms() on an Event that is already set: the per-request
        # wait machinery of coap.client without any I/O.
        ev = asyncio.Event()
        ev.set()

        async def loop(k):
            for _ in range(k):
                await asyncio.wait_for_ms(ev.wait(), 2000)

    else:
        raise SystemExit("unknown case " + case)
    await ameasure(loop, metric, n, warm, res)
    return res


# ---- single steps without I/O ---------------------------------------------------
def run_step(case, metric, n, warm):
    res = {}
    if case == "dumps":
        from tbdevice.jsonenc import dumps

        def loop(k):
            for _ in range(k):
                dumps(VALUES)

    elif case == "jsondumps":
        sep = (",", ":")

        def loop(k):
            for _ in range(k):
                json.dumps(VALUES, separators=sep)

    elif case == "encode":
        from coap import message as m
        from coap.client import Route

        route = Route("api/v1/" + TOKEN + "/telemetry")
        buf = bytearray(1280)
        body = payload_bytes()
        tok = b"\xa1\xb2\xc3\xd4"

        def loop(k):
            for i in range(k):
                m.encode_into(buf, m.CON, m.POST, i & 0xFFFF, tok, route.opts, body)

    elif case == "decode":
        from coap import message as m

        rsp = bytearray(b"\x64\x41\x12\x34\xa1\xb2\xc3\xd4") + bytearray(1272)

        def loop(k):
            for _ in range(k):
                m.decode(rsp, 8)

    elif case == "token":
        from coap.client import Client

        c = Client(HOST, 5683)

        def loop(k):
            for _ in range(k):
                c.new_token()

    elif case == "exobj":
        from coap.client import _Exchange

        tok = b"\xa1\xb2\xc3\xd4"

        def loop(k):
            for _ in range(k):
                _Exchange(tok)

    else:
        raise SystemExit("unknown case " + case)
    measure(loop, metric, n, warm, res)
    return res


def main():
    case, port, metric, n, warm = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    if case == "raw":
        res = run_raw(port, metric, n, warm)
    elif case in ("araw", "exchange", "request", "device", "wait"):
        import asyncio

        res = asyncio.run(run_async(case, port, metric, n, warm))
    else:
        res = run_step(case, metric, n, warm)
    res["case"] = case
    res["metric"] = metric
    print("RESULT", json.dumps(res))


main()
