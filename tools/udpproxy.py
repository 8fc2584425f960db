#!/usr/bin/env python3
"""A seeded UDP fault proxy: loss, duplication, reordering, delay and blackouts between a
client and a server (this kernel has no tc netem; DESIGN §7).

    python tools/udpproxy.py --listen 127.0.0.1:5684 --to 127.0.0.1:5683 \\
        --loss 0.2 --dup 0.1 --reorder 0.1 --delay-ms 0-50 --seed 1 [--blackout 5:3]

Clients send to --listen; each client address gets its own upstream socket to --to, so
replies go back to the client that caused them. Faults are drawn independently for each
direction ("up" = client to server, "down" = server to client) from per-direction random
generators seeded from --seed, so the same traffic sees the same faults. A rate may be one
number for both directions or "UP,DOWN" (e.g. --loss 0.2,0).

- loss: the datagram is dropped.
- dup: a second copy is sent, with its own delay.
- reorder: the datagram is held back and released right after the next datagram in the
  same direction (or after --reorder-hold-ms if none comes), so the two swap places.
- delay-ms: each datagram (copy) is delayed uniformly in LO-HI ms ("20" means 20-20).
- blackout START_S:DURATION_S: everything is dropped, both ways, in that window after
  start (repeatable).

Prints "udpproxy: listening on HOST:PORT -> HOST:PORT" on stderr once ready (so --listen
with port 0 is usable from scripts), and one line of stats on stdout when it ends
(SIGINT, SIGTERM or --duration). Importable: UdpProxy(...).start() / .stop() runs it in
a thread; await astart() / astop() inside a running loop.
"""
import argparse
import asyncio
import json
import random
import signal
import sys
import threading
import time

UP, DOWN = "up", "down"
_COUNTERS = ("in", "out", "lost", "dup", "reordered", "blackout")


def parse_hostport(s):
    """'127.0.0.1:5683', '[::1]:5683', 'localhost:0' -> (host, port)."""
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        if not rest.startswith(":"):
            raise ValueError("expected [HOST]:PORT, got %r" % s)
        return host, int(rest[1:])
    host, sep, port = s.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, got %r" % s)
    return host, int(port)


def parse_rate(s):
    """'0.2' -> (0.2, 0.2); '0.2,0.1' -> (up, down); each in [0, 1]."""
    parts = [float(x) for x in str(s).split(",")]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not all(0.0 <= p <= 1.0 for p in parts):
        raise ValueError("a rate is P or UP,DOWN with each in [0, 1], got %r" % s)
    return tuple(parts)


def parse_delay(s):
    """'0-50' -> (0, 50) ms; '20' -> (20, 20)."""
    lo, sep, hi = str(s).partition("-")
    lo = float(lo)
    hi = float(hi) if sep else lo
    if lo < 0 or hi < lo:
        raise ValueError("delay is LO-HI ms with 0 <= LO <= HI, got %r" % s)
    return lo, hi


def parse_blackout(s):
    start, sep, dur = s.partition(":")
    if not sep:
        raise ValueError("blackout is START_S:DURATION_S, got %r" % s)
    start, dur = float(start), float(dur)
    if start < 0 or dur < 0:
        raise ValueError("blackout values must be >= 0, got %r" % s)
    return start, dur


def _pair(v):
    return v if isinstance(v, (tuple, list)) else (v, v)


class _Direction:
    """Fault injection for one direction. Every datagram consumes the same number of
    random draws whatever happens to it, so one fault never shifts the next ones."""

    def __init__(self, proxy, name, rng, loss, dup, reorder, delay_ms):
        self.proxy = proxy
        self.name = name
        self.rng = rng
        self.loss = loss
        self.dup = dup
        self.reorder = reorder
        self.delay_ms = delay_ms
        self.stats = dict.fromkeys(_COUNTERS, 0)
        self.held = None  # (send, data, timer) of a datagram held back for reordering

    def submit(self, data, send):
        st = self.stats
        st["in"] += 1
        r = self.rng
        r_loss, r_dup, r_reorder = r.random(), r.random(), r.random()
        lo, hi = self.delay_ms
        delays = (r.uniform(lo, hi) / 1000.0, r.uniform(lo, hi) / 1000.0)
        if self.proxy.blacked_out():
            st["blackout"] += 1
            return
        if r_loss < self.loss:
            st["lost"] += 1
            return
        copies = 2 if r_dup < self.dup else 1
        st["dup"] += copies - 1
        hold = r_reorder < self.reorder
        for i in range(copies):
            self._later(delays[i], self._emit, data, send, hold and i == 0)

    def _later(self, delay, fn, *args):
        loop = self.proxy.loop
        if delay <= 0:
            fn(*args)
        else:
            loop.call_later(delay, fn, *args)

    def _emit(self, data, send, hold):
        if hold and self.held is None:
            self.stats["reordered"] += 1
            timer = self.proxy.loop.call_later(self.proxy.reorder_hold_ms / 1000.0, self._release)
            self.held = (send, data, timer)
            return
        self._out(data, send)
        self._release()  # a held datagram goes out right after the one that overtook it

    def _release(self):
        if self.held is not None:
            send, data, timer = self.held
            self.held = None
            timer.cancel()
            self._out(data, send)

    def _out(self, data, send):
        if self.proxy.blacked_out():
            self.stats["blackout"] += 1
            return
        try:
            send(data)
        except OSError:
            return
        self.stats["out"] += 1


class _Upstream(asyncio.DatagramProtocol):
    # One per client address: its replies go back to that client.
    def __init__(self, proxy, client_addr):
        self.proxy = proxy
        self.client_addr = client_addr
        self.transport = None
        self.pending = []  # datagrams from the client before the upstream socket is ready
        self.last = time.monotonic()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.last = time.monotonic()
        p = self.proxy
        if p.listener is not None:
            p.down.submit(data, lambda d, a=self.client_addr: p.listener.sendto(d, a))

    def error_received(self, exc):  # ICMP port unreachable from the server: like a loss
        pass


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, proxy):
        self.proxy = proxy

    def datagram_received(self, data, addr):
        self.proxy._from_client(data, addr)

    def error_received(self, exc):
        pass


class UdpProxy:
    """The proxy. Rates are floats or (up, down) pairs; delay_ms is (lo, hi);
    blackouts is a list of (start_s, duration_s) from start()."""

    def __init__(self, listen=("127.0.0.1", 0), to=("127.0.0.1", 5683), loss=0.0, dup=0.0, reorder=0.0,
                 delay_ms=(0, 0), seed=0, blackouts=(), reorder_hold_ms=100, max_clients=64):
        self.listen = tuple(listen)
        self.to = tuple(to)
        self.blackouts = list(blackouts)
        self.reorder_hold_ms = reorder_hold_ms
        self.max_clients = max_clients
        self.seed = seed
        loss, dup, reorder = _pair(loss), _pair(dup), _pair(reorder)
        delay_ms = tuple(delay_ms)
        if len(delay_ms) == 2 and isinstance(delay_ms[0], (int, float)):
            delay_ms = (delay_ms, delay_ms)
        self.up = _Direction(self, UP, random.Random("%s/up" % seed), loss[0], dup[0], reorder[0], delay_ms[0])
        self.down = _Direction(self, DOWN, random.Random("%s/down" % seed), loss[1], dup[1], reorder[1], delay_ms[1])
        self.loop = None
        self.listener = None
        self.sessions = {}
        self.t0 = None
        self._thread = None
        self._stopped = None

    # ---- address and stats -----------------------------------------------------
    @property
    def address(self):
        return self.listener.get_extra_info("sockname")[:2] if self.listener else None

    @property
    def port(self):
        return self.address[1]

    @property
    def stats(self):
        return {UP: dict(self.up.stats), DOWN: dict(self.down.stats), "clients": len(self.sessions)}

    def stats_line(self):
        def one(d):
            return " ".join("%s=%d" % (k, d.stats[k]) for k in _COUNTERS)

        return "udpproxy: up %s | down %s | clients=%d" % (one(self.up), one(self.down), len(self.sessions))

    def blacked_out(self):
        if not self.blackouts:
            return False
        t = time.monotonic() - self.t0
        return any(s <= t < s + d for s, d in self.blackouts)

    # ---- running inside a loop ---------------------------------------------------
    async def astart(self):
        self.loop = asyncio.get_running_loop()
        self.t0 = time.monotonic()
        tr, _ = await self.loop.create_datagram_endpoint(lambda: _Listener(self), local_addr=self.listen)
        self.listener = tr
        return self

    async def astop(self):
        for up in self.sessions.values():
            if up.transport is not None:
                up.transport.close()
        if self.listener is not None:
            self.listener.close()
        await asyncio.sleep(0)

    def _from_client(self, data, addr):
        up = self.sessions.get(addr)
        if up is None:
            if len(self.sessions) >= self.max_clients:  # forget the idlest client
                old = min(self.sessions, key=lambda a: self.sessions[a].last)
                s = self.sessions.pop(old)
                if s.transport is not None:
                    s.transport.close()
            up = _Upstream(self, addr)
            self.sessions[addr] = up

            async def connect():
                try:
                    await self.loop.create_datagram_endpoint(lambda: up, remote_addr=self.to)
                except OSError as e:
                    sys.stderr.write("udpproxy: cannot reach %s:%d: %s\n" % (self.to[0], self.to[1], e))
                    up.pending = []
                    return
                pending, up.pending = up.pending, None
                for d in pending:
                    up.transport.sendto(d)

            self.loop.create_task(connect())
        up.last = time.monotonic()
        self.up.submit(data, lambda d, u=up: self._send_up(u, d))

    @staticmethod
    def _send_up(up, data):
        if up.pending is not None:
            up.pending.append(data)
        elif not up.transport.is_closing():
            up.transport.sendto(data)

    def inject(self, datagrams, client=None, burst=20, every_ms=5):
        """Send datagrams to a client (default: the first) from the proxy's own address,
        the peer a connected client socket accepts: a hostile or broken server. Paced,
        `burst` datagrams every `every_ms`; thread-safe. Returns a concurrent future."""
        client = client or next(iter(self.sessions))
        datagrams = list(datagrams)

        async def run():
            for i in range(0, len(datagrams), burst):
                for d in datagrams[i:i + burst]:
                    self.listener.sendto(d, client)
                await asyncio.sleep(every_ms / 1000.0)
            return len(datagrams)

        return asyncio.run_coroutine_threadsafe(run(), self.loop)

    # ---- running in its own thread ---------------------------------------------------
    def start(self):
        ready = threading.Event()
        err = []

        def run():
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.astart())
            except Exception as e:
                err.append(e)
                ready.set()
                loop.close()
                return
            self._stopped = asyncio.Event()
            ready.set()
            try:
                loop.run_until_complete(self._stopped.wait())
                loop.run_until_complete(self.astop())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="udpproxy", daemon=True)
        self._thread.start()
        ready.wait(5)
        if err:
            raise err[0]
        return self

    def stop(self):
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(5)
            self._thread = None
        return self.stats

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="udpproxy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, type=parse_hostport, help="HOST:PORT clients send to (port 0: any)")
    ap.add_argument("--to", required=True, type=parse_hostport, help="HOST:PORT of the server")
    ap.add_argument("--loss", default="0", type=parse_rate, help="drop probability, P or UP,DOWN")
    ap.add_argument("--dup", default="0", type=parse_rate, help="duplication probability, P or UP,DOWN")
    ap.add_argument("--reorder", default="0", type=parse_rate, help="reordering probability, P or UP,DOWN")
    ap.add_argument("--delay-ms", default="0", type=parse_delay, help="delay per datagram, LO-HI ms")
    ap.add_argument("--reorder-hold-ms", default=100, type=float,
                    help="longest a reordered datagram waits for one to overtake it (default 100)")
    ap.add_argument("--blackout", action="append", default=[], type=parse_blackout,
                    help="START_S:DURATION_S: drop everything in that window (repeatable)")
    ap.add_argument("--seed", default=0, type=int)
    ap.add_argument("--duration", type=float, help="exit after this many seconds")
    ap.add_argument("--json", action="store_true", help="print the stats line as JSON")
    a = ap.parse_args(argv)

    proxy = UdpProxy(a.listen, a.to, a.loss, a.dup, a.reorder, a.delay_ms, a.seed, a.blackout, a.reorder_hold_ms)

    async def run():
        await proxy.astart()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        host, port = proxy.address
        sys.stderr.write("udpproxy: listening on %s:%d -> %s:%d\n" % (host, port, a.to[0], a.to[1]))
        sys.stderr.flush()
        try:
            await asyncio.wait_for(stop.wait(), a.duration)
        except asyncio.TimeoutError:
            pass
        await proxy.astop()

    try:
        asyncio.run(run())
    except OSError as e:
        sys.stderr.write("udpproxy: %s\n" % e)
        return 1
    if a.json:
        print(json.dumps(dict(proxy.stats, seed=a.seed)))
    else:
        print(proxy.stats_line())
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
