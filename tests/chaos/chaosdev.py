"""Helpers for the chaos tests: the reference app on the unix port (tests/chaos/mpy/chaosapp.py) with
numbered samples, tbsim's stored history, server-side RPC. Imported as `chaosdev` (a unique name)."""
import json
import os
import subprocess
import threading
import time

import mpy
from tbtest import wait_until

SCRIPT = os.path.join(mpy.ROOT, "tests", "chaos", "mpy", "chaosapp.py")
# Short timers so that every fault is noticed within a second or two.
FAST_COAP = {"ack_timeout_ms": 100, "max_retransmit": 4, "timeout_ms": 3000}
FAST_QUEUE = {"batch": 8, "gap_ms": 0, "retry_ms": 200, "retry_max_ms": 1000}


class ChaosDevice:
    """The app in the background; .lines is its output, .samples {seq: ts} what it took.
    on_line(line) is called from the reader thread for every line."""

    def __init__(self, tmp_path, port, token, samples, board="UNIX", on_line=None, heap="384K", spec=None,
                 **cfg):
        cfg.update(host="127.0.0.1", port=port, token=token)
        cfg.setdefault("state_dir", str(tmp_path))
        cfg.setdefault("telemetry_interval_ms", 200)
        cfg.setdefault("coap", FAST_COAP)
        cfg.setdefault("queue", FAST_QUEUE)
        s = dict(spec or {}, cfg=cfg, samples=samples)
        path = tmp_path / "chaos-spec.json"
        path.write_text(json.dumps(s))
        if board == "UNIX":
            mp = mpy.PATH
        else:  # a Wi-Fi board's HAL on the fakes of machine/network/ntptime/esp32
            mp = ":".join(os.path.join(mpy.ROOT, p) for p in (
                "tests/boards/fakes", "lib", "firmware", "boards/" + board, "boards/common")) + ":.frozen"
        self.on_line = on_line
        self.lines = []
        self.samples = {}
        self.proc = subprocess.Popen([mpy.MICROPYTHON, "-X", "heapsize=" + heap, SCRIPT, str(path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, MICROPYPATH=mp), cwd=mpy.ROOT)
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        assert self.wait_for("ready", 60), self.output()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if line.startswith("sample "):
                _, seq, ts = line.split()
                self.samples[int(seq)] = None if ts == "None" else int(ts)
            if self.on_line is not None:
                self.on_line(line)

    def wait_for(self, text, timeout=10, start=0):
        return wait_until(lambda: next((l for l in self.lines[start:] if text in l), None), timeout)

    def output(self):
        return "\n".join(self.lines[-200:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        self._t.join(timeout=2)
        if os.environ.get("SHOW_DEVICE"):
            print("\n".join(self.lines))


def history(sim, key="seq"):
    """[(ts, value), ...] oldest first: every stored value of `key` (one per ts, as ThingsBoard keeps)."""
    did = sim.rest.device_id(sim.device_name)
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys=key, startTs=0,
                       endTs=int(time.time() * 1000) + 3600000, limit=100000, orderBy="ASC",
                       useStrictDataTypes="true")
    return [(int(p["ts"]), p["value"]) for p in got.get(key, [])]


def all_stored(sim, n, timeout):
    """Wait until n values of seq are stored; returns the history."""
    return wait_until(lambda: (lambda h: h if len(h) >= n else None)(history(sim)), timeout, interval=0.25) \
        or history(sim)


def rpc(sim, method, params=None, timeout_ms=5000):
    """Two-way server-side RPC through REST; (status, reply)."""
    did = sim.rest.device_id(sim.device_name)
    return sim.rest.request("POST", "/api/plugins/rpc/twoway/" + did,
                            {"method": method, "params": params or {}, "timeout": timeout_ms},
                            timeout=timeout_ms / 1000 + 5)


def exactly_once(dev, stored):
    """Every sample the device took is stored once, under its own timestamp, and nothing else."""
    taken = sorted((ts, seq) for seq, ts in dev.samples.items())
    assert None not in dict(taken), "a sample without ts"
    missing = sorted(set(taken) - set(stored))
    extra = sorted(set(stored) - set(taken))
    assert not missing and not extra, (missing[:10], extra[:10], dev.output())
    assert len(stored) == len(set(ts for ts, _ in stored)) == len(taken)
