"""Processes of `make bench` (bench/run.py): everything started is killed on the way out; the CPython
servers the MicroPython clients talk to (bench/responder.py, httpresponder.py, notifier.py); tools/ loaded
as modules."""
import json
import os
import signal
import subprocess
import sys
import threading

from cases import BENCH, CPU, ROOT, SERVER_OF

sys.path.insert(0, os.path.join(ROOT, "tests"))
from tbtest import free_port, load_tool  # noqa: E402,F401 (the tests' helpers: a free loopback port, tools/<name> as a module)

_procs = []  # everything we start, killed on the way out
_procs_lock = threading.Lock()


class BenchError(Exception):
    pass


_stopping = threading.Event()  # set on SIGINT/SIGTERM: start nothing more


def _spawn(cmd, env=None, **kw):
    with _procs_lock:
        if _stopping.is_set():
            raise BenchError("stopping")
        p = subprocess.Popen(cmd, env=env, start_new_session=True, **kw)
        _procs.append(p)
    return p


def _kill(p):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)  # its own session: the process and its children
        except ProcessLookupError:
            pass
        try:
            p.wait(3)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    with _procs_lock:
        if p in _procs:
            _procs.remove(p)


def kill_all():
    with _procs_lock:
        ps = list(_procs)
    for p in ps:
        _kill(p)


def run(cmd, env=None, timeout=120):
    """Run to completion; returns stdout. Killed (with its children) on timeout."""
    p = _spawn(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(p)
        raise BenchError("timed out after %ds: %s" % (timeout, " ".join(cmd)))
    finally:
        _kill(p)
    if p.returncode != 0:
        raise BenchError("exit %d: %s\n%s" % (p.returncode, " ".join(cmd), (err or out)[-2000:]))
    return out + err


def result_line(out):
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise BenchError("no RESULT line in:\n" + out[-2000:])


class Responder:
    """bench/responder.py on a free port, pinned to CPU; lines it prints are kept."""

    def __init__(self, log=False, pin=True):
        self.lines = []
        for _ in range(5):
            self.port = free_port()
            cmd = [sys.executable, os.path.join(BENCH, "responder.py"), str(self.port)]
            if log:
                cmd.append("--log")
            if pin:
                cmd = ["taskset", "-c", CPU] + cmd
            self.p = _spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            first = self.p.stdout.readline()
            if first.startswith("PORT "):
                threading.Thread(target=self._read, daemon=True).start()
                return
            _kill(self.p)  # the port was taken in between: try another
        raise BenchError("responder did not start: " + self.p.stderr.read()[-1000:])

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line.strip())

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        _kill(self.p)


class Server(Responder):
    """bench/httpresponder.py, bench/mqttresponder.py or bench/notifier.py (kind attr|rpc, count
    notifications)."""

    def __init__(self, kind, log=False, pin=True, count=-1, skip=0):
        self.lines = []
        for _ in range(5):
            self.port = free_port()
            if kind in ("http", "mqtt"):
                cmd = [sys.executable, os.path.join(BENCH, kind + "responder.py"), str(self.port)]
            else:
                cmd = [sys.executable, os.path.join(BENCH, "notifier.py"), str(self.port), "--kind", kind, "--count",
                       str(count), "--skip", str(skip)]
            if log:
                cmd.append("--log")
            if pin:
                cmd = ["taskset", "-c", CPU] + cmd
            self.p = _spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            first = self.p.stdout.readline()
            if first.startswith("PORT "):
                self._t = threading.Thread(target=self._read, daemon=True)
                self._t.start()
                return
            _kill(self.p)
        raise BenchError("%s server did not start: %s" % (kind, self.p.stderr.read()[-1000:]))

    def finish(self):
        """SIGTERM, then what it printed (the notifier prints its LAT line on the way out)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._t.join(2)
        _kill(self.p)
        return self.lines


def server_for(case, pin=False, count=-1, log=False, skip=0):
    kind = SERVER_OF.get(case, "coap")
    if kind == "coap":
        return Responder(log=log, pin=pin)
    return Server(kind, log=log, pin=pin, count=count, skip=skip)

