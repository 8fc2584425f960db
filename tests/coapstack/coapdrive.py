# Fixtures for the CoAP client tests: a scripted CPython peer (tests/peers) and a runner
# for tests/coapstack/mpy/drive.py on the MicroPython unix port.
import json
import os
import tempfile

import pytest

import mpy
from peers.scripted_peer import ScriptedPeer, Router
from tbtest import free_port  # noqa: F401 (tests import it from here)

HERE = os.path.dirname(os.path.abspath(__file__))

DRIVER = os.path.relpath(os.path.join(HERE, "mpy", "drive.py"), mpy.ROOT)

# Which way the client learns when other tasks are due (lib/coap/sched.py): True through
# asyncio's run queue, False with the public API only (no inline wait). conftest.py runs
# every test that uses a peer both ways.
SCHED_INTERNALS = True

# Small timers keep the suite fast; each test overrides what it measures.
FAST = {"ack_timeout_ms": 100, "ack_random_factor": 1.5, "max_retransmit": 4, "timeout_ms": 5000}


class Run:
    """Parsed output of one drive.py run: .steps (one dict per step), .counters, .raw."""

    def __init__(self, proc):
        self.proc = proc
        self.raw = proc.stdout + proc.stderr
        lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
        self.steps = [x for x in lines if "step" in x]
        tail = [x for x in lines if "counters" in x]
        self.tail = tail[-1] if tail else {}
        self.counters = self.tail.get("counters", {})

    def __getitem__(self, i):
        return self.steps[i]


def run_client(port, steps, client=None, timeout=60, heap="256K", check=True):
    # 256K: the driver prints bodies as hex inside JSON (several copies of a 5000-byte
    # body); the stack itself needs far less.
    cfg = dict(FAST)
    cfg.update(client or {})
    script = {"host": "127.0.0.1", "port": port, "client": cfg, "steps": steps, "sched_internals": SCHED_INTERNALS}
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="coap-drive-", delete=False) as f:
        json.dump(script, f)
    try:
        proc = mpy.run([DRIVER, f.name], heap=heap, timeout=timeout)
    finally:
        os.unlink(f.name)
    r = Run(proc)
    if check:
        assert proc.returncode == 0, r.raw
        assert len(r.steps) == len(steps), r.raw
        assert r.tail.get("rx_alive"), r.raw  # the receive loop survived whatever it was fed
    return r
