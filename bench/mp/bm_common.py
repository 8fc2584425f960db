# Shared by the benchmark cases (MicroPython): the request, and the three ways of
# measuring a loop. Kept small: everything loaded here takes heap from the stack under test.
import gc
import json
import socket
import time

TOKEN = "A1b2C3d4E5f6G7h8I9j0"  # a 20-character access token, like ThingsBoard's
VALUES = {"temperature": 21.5, "humidity": 40.25}
HOST = "127.0.0.1"


def payload_bytes():
    return json.dumps(VALUES, separators=(",", ":")).encode()


def raw_request():
    # The datagram the stack sends, built once by hand (RFC 7252 §3): CON POST, a 4-byte
    # token, Uri-Path api / v1 / <token> / telemetry, payload; no Content-Format, as the
    # stack sends none.
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
    out.extend(payload_bytes())
    return bytes(out)


def addr(port):
    return socket.getaddrinfo(HOST, port)[0][-1]


def measure(loop, metric, n, warm, res):
    # loop(k) sends k messages (or does k steps).
    if metric == "count":  # for callgrind: the run with n=N minus the run with n=0
        loop(warm + n)
    elif metric == "heap":
        loop(warm)
        gc.collect()
        gc.disable()  # no collection may hide an allocation
        a = gc.mem_alloc()
        loop(n)
        b = gc.mem_alloc()
        gc.enable()
        res["heap_bytes"] = b - a
        res["n"] = n
    elif metric == "rate":  # a window of about n ms
        loop(warm)
        k = 200
        while True:
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
