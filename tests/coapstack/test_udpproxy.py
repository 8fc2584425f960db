# tools/udpproxy.py on its own (importable and CLI), then lib/coap through it.
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from coapdrive import run_client
from peers.scripted_peer import ACK, Piggyback, Separate

import udpproxy
from udpproxy import UdpProxy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROXY = os.path.join(ROOT, "tools", "udpproxy.py")


class Echo:
    """A CPython UDP echo server in a thread; records what it got."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.got = []
        self.run = True
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while self.run:
            try:
                d, a = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            self.got.append(d)
            self.sock.sendto(b"echo:" + d, a)

    def close(self):
        self.run = False
        self.t.join(1)
        self.sock.close()


@pytest.fixture
def echo():
    e = Echo()
    yield e
    e.close()


def client_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.3)
    return s


def exchange(port, msgs, gap=0.0, wait=0.3):
    """Send msgs to the proxy; return every reply received until `wait` s of silence."""
    s = client_socket()
    for m in msgs:
        s.sendto(m, ("127.0.0.1", port))
        if gap:
            time.sleep(gap)
    out = []
    s.settimeout(wait)
    while True:
        try:
            out.append(s.recv(2048))
        except socket.timeout:
            break
    s.close()
    return out


def test_clean_proxy_forwards_both_ways(echo):
    with UdpProxy(to=("127.0.0.1", echo.port)) as p:
        got = exchange(p.port, [b"a", b"b", b"c"], gap=0.01, wait=0.2)
    assert got == [b"echo:a", b"echo:b", b"echo:c"]
    assert p.stats["up"]["in"] == 3 and p.stats["up"]["out"] == 3 and p.stats["down"]["out"] == 3


def test_loss_per_direction(echo):
    with UdpProxy(to=("127.0.0.1", echo.port), loss=(1.0, 0.0)) as p:
        assert exchange(p.port, [b"x"] * 5, wait=0.15) == []
    assert echo.got == [] and p.stats["up"]["lost"] == 5
    with UdpProxy(to=("127.0.0.1", echo.port), loss=(0.0, 1.0)) as p:
        assert exchange(p.port, [b"y"] * 5, wait=0.15) == []
    assert echo.got == [b"y"] * 5 and p.stats["down"]["lost"] == 5


def test_loss_rate_is_roughly_right_and_seeded(echo):
    msgs = [b"%d" % i for i in range(200)]
    runs = []
    for _ in range(2):
        echo.got.clear()
        with UdpProxy(to=("127.0.0.1", echo.port), loss=(0.2, 0.0), seed=7) as p:
            exchange(p.port, msgs, gap=0.001, wait=0.3)
        runs.append(list(echo.got))
    assert runs[0] == runs[1], "same seed, same traffic: same datagrams lost"
    assert 120 <= len(runs[0]) <= 190
    echo.got.clear()
    with UdpProxy(to=("127.0.0.1", echo.port), loss=(0.2, 0.0), seed=8) as p:
        exchange(p.port, msgs, gap=0.001, wait=0.3)
    assert echo.got != runs[0], "another seed, other losses"


def test_duplication(echo):
    with UdpProxy(to=("127.0.0.1", echo.port), dup=(1.0, 0.0)) as p:
        got = exchange(p.port, [b"d"], wait=0.2)
    assert echo.got == [b"d", b"d"] and got == [b"echo:d", b"echo:d"]
    assert p.stats["up"]["dup"] == 1 and p.stats["up"]["out"] == 2


def test_reordering_swaps_neighbours(echo):
    # Every other datagram is held back until the next one has gone out.
    with UdpProxy(to=("127.0.0.1", echo.port), reorder=(1.0, 0.0), reorder_hold_ms=300) as p:
        exchange(p.port, [b"1", b"2", b"3", b"4"], gap=0.02, wait=0.4)
    assert echo.got == [b"2", b"1", b"4", b"3"]
    assert p.stats["up"]["reordered"] == 2


def test_reorder_hold_expires_without_traffic(echo):
    with UdpProxy(to=("127.0.0.1", echo.port), reorder=(1.0, 0.0), reorder_hold_ms=50) as p:
        got = exchange(p.port, [b"only"], wait=0.3)
    assert got == [b"echo:only"] and echo.got == [b"only"]


def test_delay_range(echo):
    with UdpProxy(to=("127.0.0.1", echo.port), delay_ms=(40, 60)) as p:
        s = client_socket()
        t0 = time.monotonic()
        s.sendto(b"t", ("127.0.0.1", p.port))
        assert s.recv(100) == b"echo:t"
        rtt = time.monotonic() - t0
        s.close()
    assert 0.08 <= rtt <= 0.2, rtt  # delayed both ways


def test_blackout_window(echo):
    with UdpProxy(to=("127.0.0.1", echo.port), blackouts=[(0.0, 0.3)]) as p:
        assert exchange(p.port, [b"dark"], wait=0.1) == []
        time.sleep(0.25)
        assert exchange(p.port, [b"light"], wait=0.2) == [b"echo:light"]
    assert echo.got == [b"light"] and p.stats["up"]["blackout"] == 1


def test_clients_get_their_own_replies(echo):
    with UdpProxy(to=("127.0.0.1", echo.port)) as p:
        a, b = client_socket(), client_socket()
        a.sendto(b"from-a", ("127.0.0.1", p.port))
        b.sendto(b"from-b", ("127.0.0.1", p.port))
        assert a.recv(100) == b"echo:from-a" and b.recv(100) == b"echo:from-b"
        a.close(), b.close()
        assert p.stats["clients"] == 2


def test_parsers():
    assert udpproxy.parse_hostport("127.0.0.1:5683") == ("127.0.0.1", 5683)
    assert udpproxy.parse_hostport("[::1]:0") == ("::1", 0)
    assert udpproxy.parse_rate("0.2") == (0.2, 0.2) and udpproxy.parse_rate("0.1,0") == (0.1, 0.0)
    assert udpproxy.parse_delay("0-50") == (0.0, 50.0) and udpproxy.parse_delay("20") == (20.0, 20.0)
    assert udpproxy.parse_blackout("5:3") == (5.0, 3.0)
    for bad in (lambda: udpproxy.parse_rate("1.5"), lambda: udpproxy.parse_delay("50-10"),
                lambda: udpproxy.parse_hostport("nohost"), lambda: udpproxy.parse_blackout("5")):
        with pytest.raises(ValueError):
            bad()


def start_cli(*args):
    p = subprocess.Popen([sys.executable, PROXY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    m = re.match(r"udpproxy: listening on 127\.0\.0\.1:(\d+) -> ", line)
    assert m, line
    return p, int(m.group(1))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_stats_line_on_signal(echo, sig):
    p, port = start_cli("--listen", "127.0.0.1:0", "--to", "127.0.0.1:%d" % echo.port, "--loss", "0,1",
                        "--dup", "0", "--reorder", "0", "--delay-ms", "0-5", "--seed", "3", "--blackout", "100:1")
    try:
        assert exchange(port, [b"a", b"b"], wait=0.15) == []
    finally:
        p.send_signal(sig)
        out, err = p.communicate(timeout=5)
    assert p.returncode == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert "up in=2 out=2 lost=0" in lines[0] and "down in=2 out=0 lost=2" in lines[0], lines[0]
    assert sorted(echo.got) == [b"a", b"b"]  # the random delay may swap them


def test_cli_duration_and_json(echo):
    import json

    p, port = start_cli("--listen", "127.0.0.1:0", "--to", "127.0.0.1:%d" % echo.port, "--dup", "1,0",
                        "--duration", "0.5", "--json", "--seed", "9")
    assert exchange(port, [b"j"], wait=0.1) == [b"echo:j", b"echo:j"]
    out, _ = p.communicate(timeout=5)
    st = json.loads(out)
    assert st["up"]["dup"] == 1 and st["down"]["out"] == 2 and st["seed"] == 9


def test_cli_rejects_bad_arguments():
    r = subprocess.run([sys.executable, PROXY, "--listen", "127.0.0.1:0", "--to", "127.0.0.1:1", "--loss", "2"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "rate" in r.stderr


# ---- lib/coap through the proxy -------------------------------------------------------
def test_requests_complete_exactly_once_through_lossy_proxy(peer_factory):
    # 20 % loss both ways, 10 % duplication, 10 % reordering, 0-10 ms delay: every request
    # completes once with its own answer; the peer sees duplicates and retransmissions.
    sep = Separate(lambda ctx: b"sep:" + bytes(ctx.msg.payload), delay=0.0, con=True, empty_ack=False,
                   reliable=True, rto=0.06)
    peer = peer_factory({"p": Piggyback(lambda ctx: b"pig:" + bytes(ctx.msg.payload)), "s": sep})
    n = 24
    with UdpProxy(to=("127.0.0.1", peer.port), loss=0.2, dup=0.1, reorder=0.1, delay_ms=(0, 10), seed=2024,
                  reorder_hold_ms=30) as px:
        steps = [{"path": "ps"[i % 2], "method": "post", "payload": "m%02d" % i, "id": i} for i in range(n)]
        steps.append({"op": "sleep", "ms": 400})  # let the last response's ACK get through
        r = run_client(px.port, steps, {"ack_timeout_ms": 40, "max_retransmit": 6, "timeout_ms": 8000}, timeout=90)
    st = px.stats
    for i, res in enumerate(r.steps[:n]):
        assert "error" not in res, (i, res, st)
        assert bytes.fromhex(res["payload"]) == (b"pig:" if i % 2 == 0 else b"sep:") + b"m%02d" % i
    reqs = peer.requests()
    assert len({d.mid for d in reqs}) == n, "one MID per request, whatever the copies"
    assert len(reqs) > n, "the peer saw retransmissions or duplicates"
    assert st["up"]["lost"] and st["down"]["lost"] and (st["up"]["dup"] or st["down"]["dup"]), st
    # Every separate CON response was ACKed in the end (the peer stops retransmitting).
    assert len(sep.exchanges) == n // 2
    assert all(ex.done and ex.reply == ACK for ex in sep.exchanges), [(e.sends, e.reply) for e in sep.exchanges]
    assert r.counters["duplicates"] + r.counters["rejected"] > 0, "the client saw duplicates too"


def test_blockwise_through_lossy_proxy(peer_factory):
    import random

    from peers.scripted_peer import Block1, Block2

    down = random.Random(1).randbytes(5000)
    upload = random.Random(2).randbytes(3000)
    up = Block1()
    peer = peer_factory({"d": Block2(down, etag=b"e1"), "u": up})
    with UdpProxy(to=("127.0.0.1", peer.port), loss=0.2, dup=0.1, reorder=0.1, delay_ms=(0, 10), seed=77,
                  reorder_hold_ms=30) as px:
        steps = [{"path": "d"}, {"path": "u", "method": "put", "payload_hex": upload.hex()}]
        r = run_client(px.port, steps, {"ack_timeout_ms": 40, "max_retransmit": 6, "timeout_ms": 8000}, timeout=90)
    assert bytes.fromhex(r[0]["payload"]) == down, (r[0].get("error"), px.stats)
    assert r[1]["code"] == "2.04" and up.bodies == [upload], px.stats
