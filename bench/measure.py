"""Measurements of `make bench` (bench/run.py) on the MicroPython side: the lib and the benchmark
client compiled to .mpy (Mpy), bytes on the wire checked with aiocoap's decoder, OTA downloads
(tools/ota-bench and a counting proxy), import heap per module, callgrind's split of the
instructions. The memory figures on the 32-bit port are bench/memory.py's."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from cases import (BENCH, BOUND_OF, CPU, HOST_PY, MICROPYTHON, MICROPYTHON32, MPY_CROSS, PACKAGES, ROOT, SERVER_OF,
                   STACK_OF, TOKEN, VALUES)
from procs import BenchError, Responder, Server, _kill, _spawn, load_tool, result_line, run

# ---- the MicroPython side ---------------------------------------------------------------
class Mpy:
    """lib and bench/client.py compiled with mpy-cross into a temp dir (how `make deploy`
    ships them), so that a 64K heap holds the benchmark without compiling source."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.lib = os.path.join(tmp, "lib")
        self.sizes = {}  # "coap/client.py" -> (source bytes, .mpy bytes), for PACKAGES
        src_root = os.path.join(ROOT, "lib")
        board = load_tool("board")
        for dirpath, dirnames, filenames in os.walk(src_root):  # all of lib/: packages import each other
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
            rel = os.path.relpath(dirpath, src_root)
            os.makedirs(os.path.join(self.lib, rel), exist_ok=True)
            for name in sorted(filenames):
                if name.endswith(".py") and name != "manifest.py":  # manifest.py is for the build, not the device
                    src = os.path.join(dirpath, name)
                    dst = os.path.join(self.lib, rel, name[:-3] + ".mpy")
                    dev = "lib/" + os.path.relpath(src, src_root).replace(os.sep, "/")
                    run([MPY_CROSS, "-o", dst] + board.mpy_cross_args(dev, None) + [src])  # as `make build`
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

    def client(self, case, port, metric, n, warm, heap=None, pin=False, timeout=120, mp=MICROPYTHON):
        cmd = [mp, "-X", "heapsize=" + (heap or self.heap_of(case)), "-m", "client", case, str(port), metric, str(n), str(warm)]
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
                       ("http", ("rawhttp", "http", "rawhttpproto", "httpproto")), ("mqtt", ("rawmqtt", "mqtt"))):
        r = Responder(log=True, pin=False) if srv == "coap" else Server(srv, log=True, pin=False)
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
                elif srv == "mqtt":
                    # PUBLISH (MQTT 3.1.1 §3.3): fixed header, topic, packet id, payload; nothing in it
                    # is optional for a QoS 1 message on ThingsBoard's fixed topic, so it is minimal.
                    tl = (req[2] << 8) | req[3]
                    if req[0] != 0x32 or rsp[:2] != b"\x40\x02" or rsp[2:] != req[4 + tl:6 + tl]:
                        errors.append("%s: not a QoS 1 PUBLISH and its PUBACK: %s / %s" % (c, req.hex(), rsp.hex()))
                    if json.loads(req[6 + tl:]) != VALUES:
                        errors.append("%s: PUBLISH payload %r" % (c, req[6 + tl:]))
                    row["topic"] = req[4:4 + tl].decode()
                    row["payload"] = len(req) - 4 - tl - 2
                    row["minimal_request"] = len(req)
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
    for c in ("device", "devnon", "devproto", "http", "httpproto", "mqtt"):
        b = BOUND_OF[c]
        if c in out and b in out:
            if c == "mqtt":  # the same but for the packet id
                rq, rb = bytes.fromhex(out[c]["request_hex"]), bytes.fromhex(out[b]["request_hex"])
                tl = 4 + ((rq[2] << 8) | rq[3])
                same = len(rq) == len(rb) and rq[:tl] == rb[:tl] and rq[tl + 2:] == rb[tl + 2:]
            elif c.startswith("http"):
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
    ob = load_tool("ota-bench")
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


# ---- import heap cost -------------------------------------------------------------------
# Heap retained by importing one module in a fresh process (its imports included).
IMPORT_SNIPPET = (
    "import gc\n"
    "gc.collect()\n"
    "a = gc.mem_alloc()\n"
    "import {mod}\n"
    "gc.collect()\n"
    "print('RESULT', '{{\"heap\": %d}}' % (gc.mem_alloc() - a))\n"
)


# The 32-bit build has no ssl module: a stand-in (an empty class) lets coap.dtls load, whose
# ssl attributes are used only at run time (tools/min-heap does the same for its coaps estimate).
SSL_STUB = "import sys\nclass _ssl: pass\nsys.modules.setdefault('ssl', _ssl)\n"


def import_costs(mpy, warnings):
    """{module: {"mpy32": .mpy on the 32-bit port, "mpy": .mpy on the 64-bit port, "py": source on the
    64-bit port}} in bytes (None when it failed: a warning says why)."""
    mods = ["asyncio"]
    for key in sorted(mpy.sizes):
        pkg, name = key.split("/")
        mods.append(pkg if name == "__init__.py" else pkg + "." + name[:-3])
    out = {}
    for mod in mods:
        row = {}
        for kind, port, env, pre in (("mpy32", MICROPYTHON32, mpy.env, SSL_STUB), ("mpy", MICROPYTHON, mpy.env, ""),
                                     ("py", MICROPYTHON, mpy.src_env, "")):
            try:
                res = result_line(run([port, "-c", pre + IMPORT_SNIPPET.format(mod=mod)], env=env, timeout=30))
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
