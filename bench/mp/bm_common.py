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


def proto_payload():
    # The default profile's SensorDataReading (spec §11.1) by hand: field 1 temperature and
    # field 2 humidity, both double (wire type 1, 8 bytes little-endian).
    import struct

    return b"\x09" + struct.pack("<d", VALUES["temperature"]) + b"\x11" + struct.pack("<d", VALUES["humidity"])


def coap_request(path, payload, mtype=0, code=2, observe=False, token=b"\xa1\xb2\xc3\xd4"):
    # A datagram as the stack sends it, built once by hand (RFC 7252 §3): a 4-byte token,
    # one Uri-Path option per segment, the payload; no Content-Format, as the stack sends none.
    out = bytearray(b"\x40\x02\x12\x34" + token)
    out[0] = 0x40 | (mtype << 4) | len(token)
    out[1] = code
    prev = 0
    if observe:  # Observe (6) = 0: a zero-length value (RFC 7641 §2)
        out.append(6 << 4)
        prev = 6
    for seg in path.split("/"):
        d = 11 - prev
        prev = 11
        ln = len(seg)
        if ln < 13:
            out.append((d << 4) | ln)
        else:
            out.append((d << 4) | 13)
            out.append(ln - 13)
        out.extend(seg.encode())
    if payload:
        out.append(0xFF)
        out.extend(payload)
    return bytes(out)


def raw_request(mtype=0, payload=None):
    # CON (0) or NON (1) POST api/v1/<token>/telemetry with the JSON (or given) payload.
    # The empty token, as the stack sends a request made one at a time (coap.client).
    return coap_request("api/v1/" + TOKEN + "/telemetry", payload_bytes() if payload is None else payload, mtype, token=b"")


def http_request(port, payload):
    # The request HttpLink sends for telemetry (httpclient.client.Connection._send).
    return (b"POST /api/v1/" + TOKEN.encode() + b"/telemetry HTTP/1.1\r\nHost: " + HOST.encode() + b":"
            + str(port).encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(payload)).encode() + b"\r\n\r\n" + payload)


HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"  # what bench/httpresponder.py answers


def _mqtt_str(s):
    return bytes((len(s) >> 8, len(s) & 0xFF)) + s


def _mqtt_packet(first, body):
    # Fixed header (MQTT 3.1.1 §2.2): the type and flags, then the remaining length.
    n = len(body)
    rl = bytearray()
    while True:
        d = n & 0x7F
        n >>= 7
        rl.append(d | 0x80 if n else d)
        if not n:
            return bytes((first,)) + bytes(rl) + body


def mqtt_connect():
    # CONNECT by hand: "MQTT" level 4, clean session, user name (the access token), keep-alive 60 s.
    return _mqtt_packet(0x10, _mqtt_str(b"MQTT") + b"\x04\x82\x00\x3c" + _mqtt_str(b"bench") + _mqtt_str(TOKEN.encode()))


def mqtt_publish(payload, pid=1):
    # PUBLISH at QoS 1 on the telemetry topic, as tbdevice.mqttlink sends it.
    return _mqtt_packet(0x32, _mqtt_str(b"v1/devices/me/telemetry") + bytes((pid >> 8, pid & 0xFF)) + payload)


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
