# Benchmark notifier (CPython): a ThingsBoard-shaped CoAP server for the downlink cases.
# It answers an Observe registration of api/v1/<token>/attributes with a piggybacked
# 2.05 `{}` (the initial state) and of .../rpc with 2.03 (spec §6.2, §7), then sends CON
# notifications on the relation of its --kind, one at a time, as ThingsBoard does (at most
# one CON notification in flight per relation):
#   attr: {"setpoint":21.5} / {"setpoint":22.5} alternately; the next once the ACK is in;
#   rpc:  {"id":<6 digits>,"method":"setGpio","params":{"pin":2,"value":1}}; the next once
#         the device's reply (CON POST .../rpc/<id>) is in, answered with a piggybacked 2.01.
# --count K sends K notifications (-1: no limit). Observe values start at 0x10000 so that
# every one takes 3 bytes (fixed datagram lengths for the raw bound).
# For rpc, the round-trip latency (notification sent -> reply received) of each exchange is
# kept; on SIGTERM it prints "LAT <json>" with median, p99 and the count (after --skip).
#   python notifier.py <port> --kind attr|rpc [--count K] [--skip N] [--log]
# Prints "PORT <n>" once bound; with --log, "TX <hex>"/"RX <hex>" of the first exchange.
import json
import signal
import socket
import statistics
import sys
import time


def options(data, n):
    tkl = data[0] & 15
    i = 4 + tkl
    num = 0
    path = []
    observe = None
    while i < n and data[i] != 0xFF:
        b = data[i]
        i += 1
        d, ln = b >> 4, b & 15
        if d == 13:
            d = data[i] + 13
            i += 1
        elif d == 14:
            d = (data[i] << 8 | data[i + 1]) + 269
            i += 2
        if ln == 13:
            ln = data[i] + 13
            i += 1
        elif ln == 14:
            ln = (data[i] << 8 | data[i + 1]) + 269
            i += 2
        num += d
        val = bytes(data[i : i + ln])
        i += ln
        if num == 11:
            path.append(val.decode())
        elif num == 6:
            observe = int.from_bytes(val, "big") if val else 0
    return path, observe


class Stop(Exception):
    pass


def main():
    port = int(sys.argv[1])
    args = sys.argv[2:]
    kind = args[args.index("--kind") + 1]
    count = int(args[args.index("--count") + 1]) if "--count" in args else -1
    skip = int(args[args.index("--skip") + 1]) if "--skip" in args else 0
    log = "--log" in args
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    print("PORT", port, flush=True)
    lat = []

    def on_term(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    rx = bytearray(1500)
    peer = None
    token = b""
    mid = 0x1000
    seq = 0x10000
    sent = 0
    t_sent = 0.0
    logged = 0
    payloads = (b'{"setpoint":21.5}', b'{"setpoint":22.5}')

    def say(what, data):
        nonlocal logged
        if log and logged < 12:
            logged += 1
            print(what, bytes(data).hex(), flush=True)

    def notify():
        nonlocal mid, seq, sent, t_sent
        if count >= 0 and sent >= count:
            return
        mid = (mid + 1) & 0xFFFF
        seq = seq + 1 if seq < 0xFFFFFF else 0x10000
        if kind == "rpc":
            body = b'{"id":%d,"method":"setGpio","params":{"pin":2,"value":1}}' % (100000 + sent % 900000)
        else:
            body = payloads[sent & 1]
        out = bytes((0x40 | len(token), 69, mid >> 8, mid & 255)) + token + bytes((0x63,)) + seq.to_bytes(3, "big") + b"\xff" + body
        sent += 1
        t_sent = time.perf_counter()
        s.sendto(out, peer)
        say("TX", out)

    try:
        while True:
            try:
                n, addr = s.recvfrom_into(rx)
            except ConnectionRefusedError:  # the device has gone: ICMP for a notification
                continue
            if n < 4 or rx[0] >> 6 != 1:
                continue
            t = (rx[0] >> 4) & 3
            tkl = rx[0] & 15
            code = rx[1]
            say("RX", rx[:n])
            if code == 0:  # empty: the ACK of a notification (or a ping)
                if t == 2 and kind == "attr" and addr == peer:
                    notify()
                elif t == 0:  # CoAP ping: RST
                    s.sendto(bytes((0x70, 0, rx[2], rx[3])), addr)
                continue
            if t != 0:
                continue
            path, observe = options(rx, n)
            tok = bytes(rx[4 : 4 + tkl])
            head = bytes((0x60 | tkl,))
            if code == 1 and observe == 0 and path[-1:] in (["attributes"], ["rpc"]):
                what = path[-1]
                seq += 1
                obs = bytes((0x63,)) + seq.to_bytes(3, "big")
                if what == "attributes":
                    out = head + bytes((69, rx[2], rx[3])) + tok + obs + b"\xff{}"
                else:
                    out = head + bytes((67, rx[2], rx[3])) + tok + obs
                s.sendto(out, addr)
                say("TX", out)
                if (what == "attributes") == (kind == "attr"):
                    peer, token = addr, tok
                    notify()
            elif code == 2 and len(path) >= 2 and path[-2] == "rpc":
                now = time.perf_counter()
                out = head + bytes((65, rx[2], rx[3])) + tok
                s.sendto(out, addr)
                say("TX", out)
                if kind == "rpc" and addr == peer:
                    lat.append(now - t_sent)
                    notify()
            else:  # anything else: 4.04
                s.sendto(head + bytes((132, rx[2], rx[3])) + tok, addr)
    except (Stop, KeyboardInterrupt):
        pass
    if kind == "rpc":
        v = sorted(lat[skip:])
        res = {"n": len(v)}
        if v:
            res["median_us"] = round(statistics.median(v) * 1e6, 1)
            res["p99_us"] = round(v[min(len(v) - 1, int(len(v) * 0.99))] * 1e6, 1)
            res["max_us"] = round(v[-1] * 1e6, 1)
        print("LAT", json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
