# Hostile input at the unix-port device (issue 8): 10,000 random datagrams from the server's own
# address and port (the device's socket is connected, so only that peer gets through) interleaved
# with tbsim's real traffic by tools/udpproxy.py. Afterwards the device still reports and, after
# gc.collect(), its heap is back where it was (getStatus's heap_used).
import random
import struct
import time

from chaosdev import history, rpc
from tbtest import wait_until

STORM = 10000


def _datagrams(n, seed=8):
    r = random.Random(seed)
    out = []
    for _ in range(n):
        k = r.random()
        if k < 0.3:  # any bytes at all
            out.append(bytes(r.getrandbits(8) for _ in range(r.randrange(0, 64))))
            continue
        t = r.randrange(4)
        if k < 0.45:  # empty ACK/RST/CON ping with a random message ID
            out.append(struct.pack("!BBH", 0x40 | t << 4, 0, r.getrandbits(16)))
            continue
        tkl = r.choice((0, 1, 4, 4, 4, 8, r.randrange(9, 16)))
        code = r.choice((0x01, 0x02, 0x41, 0x44, 0x45, 0x80, 0x84, 0xA0, r.getrandbits(8)))
        head = struct.pack("!BBH", 0x40 | t << 4 | tkl, code, r.getrandbits(16))
        tok = bytes(r.getrandbits(8) for _ in range(min(tkl, 8)))
        tail = bytes(r.getrandbits(8) for _ in range(r.randrange(0, 40)))  # options, marker, payload: garbage
        if k > 0.85:  # a well-formed notification/response for nobody: Observe, Content-Format, JSON
            tail = b"\x61\x05\x11\x32\xff" + b'{"id":1,"method":"x"}'
        out.append(head + tok + tail)
    return out


def test_storm_of_random_datagrams_device_still_reports_and_heap_returns(tbsim_factory, proxy, device, tmp_path):
    sim = tbsim_factory("--ack-timeout", "0.2")
    px = proxy(sim)
    dev = device(tmp_path, px.port, sim.token, 1 << 30, telemetry_interval_ms=250)
    assert wait_until(lambda: len(history(sim)) >= 3, 30), dev.output()
    for _ in range(2):  # the first calls allocate what every later one reuses
        rpc(sim, "getStatus")
        rpc(sim, "chaosStats")
    before = rpc(sim, "getStatus")[1]
    stats0 = rpc(sim, "chaosStats")[1]
    t0 = time.monotonic()
    sent = px.inject(_datagrams(STORM)).result(timeout=60)
    storm_s = time.monotonic() - t0
    seq = len(history(sim))
    # still reporting: new samples stored after the storm
    assert wait_until(lambda: len(history(sim)) >= seq + 4, 30), dev.output()
    stats = rpc(sim, "chaosStats")[1]
    after = rpc(sim, "getStatus")[1]
    got = stats["received"] - stats0["received"]
    assert sent == STORM and got >= STORM * 0.9, (got, stats, stats0)  # the host may drop a few under load
    assert stats["rejected"] - stats0["rejected"] >= STORM * 0.5, (stats, stats0)
    grown = after["heap_used"] - before["heap_used"]
    assert grown < 2048, (before, after, dev.output())
    assert dev.proc.poll() is None
    print("storm: %d datagrams in %.1f s, %d read by the device, %d rejected; heap_used %d -> %d (%+d bytes)" % (
        sent, storm_s, got, stats["rejected"] - stats0["rejected"], before["heap_used"], after["heap_used"], grown))
