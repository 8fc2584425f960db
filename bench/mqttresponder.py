# Benchmark MQTT responder (CPython): the broker side of a ThingsBoard device connection, as
# little as the telemetry case needs (MQTT 3.1.1): CONNECT -> CONNACK accepted, PUBLISH at
# QoS 1 -> PUBACK with its packet id, SUBSCRIBE -> SUBACK granting QoS 1, PINGREQ -> PINGRESP,
# DISCONNECT closes. Anything else is read past. One thread per connection, blocking sockets,
# Nagle off, a preallocated buffer (the tbsim broker, tools/tbsim/mqttserver.py, stores
# every message: too slow to be the bound's peer).
#   python mqttresponder.py <port> [--log]
# Prints "PORT <n>" once listening; with --log, "REQ <hex>" and "RSP <hex>" for the first
# PUBLISH of each connection and what answered it.
import socket

from httpresponder import listen

CONNACK = b"\x20\x02\x00\x00"
PINGRESP = b"\xd0\x00"


def _frame(buf, a, b):
    # (remaining length, header length) of the packet at buf[a:b], or None while incomplete.
    rl, mul, i = 0, 1, a + 1
    while i < b:
        d = buf[i]
        rl += (d & 0x7F) * mul
        i += 1
        if not d & 0x80:
            return rl, i - a
        mul *= 128
        if mul > 128 ** 3:
            raise ValueError("malformed remaining length")
    return None


def serve(c, log):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(65536)
    mv = memoryview(buf)
    puback = bytearray(b"\x40\x02\x00\x00")
    a = b = 0
    first = True
    try:
        while True:
            f = _frame(buf, a, b) if b - a >= 2 else None
            if f is None or b - a < f[0] + f[1]:
                if a == b:
                    a = b = 0
                elif b > len(buf) - 4096:
                    mv[: b - a] = mv[a:b]
                    a, b = 0, b - a
                k = c.recv_into(mv[b:])
                if not k:
                    return
                b += k
                continue
            rl, hl = f
            t = buf[a] >> 4
            body = a + hl
            end = body + rl
            if t == 1:  # CONNECT
                c.sendall(CONNACK)
            elif t == 3:  # PUBLISH
                qos = (buf[a] >> 1) & 3
                if qos:
                    tl = (buf[body] << 8) | buf[body + 1]
                    p = body + 2 + tl
                    puback[2] = buf[p]
                    puback[3] = buf[p + 1]
                    c.sendall(puback)
                if log and first:
                    first = False
                    print("REQ", bytes(buf[a:end]).hex(), flush=True)
                    print("RSP", bytes(puback).hex() if qos else "", flush=True)
            elif t == 8:  # SUBSCRIBE: every filter granted QoS 1
                n = 0
                i = body + 2
                while i < end:
                    i += 2 + ((buf[i] << 8) | buf[i + 1]) + 1
                    n += 1
                c.sendall(bytes((0x90, 2 + n)) + bytes(buf[body:body + 2]) + b"\x01" * n)
            elif t == 12:  # PINGREQ
                c.sendall(PINGRESP)
            elif t == 14:  # DISCONNECT
                return
            a = end
    except (OSError, ValueError, IndexError):
        pass
    finally:
        c.close()


if __name__ == "__main__":
    listen(serve)
