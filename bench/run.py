#!/usr/bin/env python3
# `make bench`: the telemetry benchmark of the CoAP stack on the MicroPython unix port, and the
# firmware's memory on a 32-bit MicroPython (issue 13).
#
# Case: a telemetry POST of {"temperature":21.5,"humidity":40.25} to
# api/v1/<20-char token>/telemetry over loopback, CON, through Device.send_telemetry (JSON
# included), answered by bench/responder.py with a piggybacked ACK 2.01. Lower bound,
# measured in the same run against the same responder port: a raw MicroPython loop that
# sends the pre-encoded datagram and readinto()s the reply into a preallocated buffer.
#
# Figures (bench/report.md, bench/report.json): heap bytes per message (gc.mem_alloc()
# deltas, GC disabled), instructions per message (callgrind, run with N minus run with
# 0 messages), round trips per second (client and responder pinned to one core, median of
# several runs), bytes on the wire; each layer and step of the stack, import heap cost and
# .mpy sizes; the smallest heap of each tools/min-heap scenario on the 32-bit port against a
# board's free heap, and where the reference app's heap goes. Exits non-zero when a
# measurement fails.
#
#   .venv/bin/python bench/run.py [--quick] [--no-callgrind]
#
# The parts: bench/cases.py (what is measured, the goals), procs.py (processes and servers),
# measure.py (the MicroPython side, wire, OTA, imports, callgrind), memory.py and breakdown.py
# (the 32-bit memory figures), report.py (report.md and report.json).
import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import memory
from cases import (BENCH, BIG_HEAP, BOUND_OF, DOWN_CASES, HEAP_STEPS, MICROPYTHON, MICROPYTHON32, MPY_CROSS, NET_CASES,
                   REQUIRED, ROOT, SERVER_OF, STACK_OF, STEP_CASES, TELE_CASES, TOKEN, VALUES)
from measure import Mpy, check_wire, check_wire_more, import_costs, ota_bench, ota_wire, top_functions
from procs import BenchError, Responder, Server, _stopping, kill_all, server_for
from report import goal_tables, write_report


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
    params["memory_quick"] = q  # 4 KB steps, no ROMFS and no 64-bit rows
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
    for mp in (MICROPYTHON, MICROPYTHON32):
        if not os.path.exists(mp):
            raise SystemExit("no %s: run `make setup`" % mp)

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
        env["micropython32"] = (sh([MICROPYTHON32, "-c", "import sys; print(sys.version, sys.implementation._build, "
                                    "'32-bit' if sys.maxsize < 1 << 32 else '64-bit')"]) or "").strip()
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
            mq = Server("mqtt", pin=False)
            try:
                def per_message(c, what, mp):
                    # heap bytes per message of case c on port mp; a downlink case gets a notifier of its own
                    kind = SERVER_OF.get(c, "coap")
                    n, warm = params["heap_n"], params["heap_warm"]
                    srv = Server(kind, pin=False, count=n + warm) if kind in ("attr", "rpc") else None
                    port = srv.port if srv else h.port if kind == "http" else mq.port if kind == "mqtt" else r.port
                    try:
                        res = attempt(c, what, lambda: mpy.client(c, port, "heap", n, warm, heap=params["heap_heapsize"],
                                                                  timeout=60, mp=mp))
                    finally:
                        if srv:
                            srv.stop()
                    return round(res["heap_bytes"] / res["n"], 1) if res else None

                for c in NET_CASES + STEP_CASES + tuple(c for c in TELE_CASES + DOWN_CASES if c not in NET_CASES):
                    v = per_message(c, "heap", MICROPYTHON)
                    if v is not None:
                        slot(c)["heap"] = v
                        if c in cases and c in layers:
                            cases[c]["heap"] = v
                    if c in BOUND_OF:  # a stack case: its heap on the 32-bit port too, a board's sizes
                        v = per_message(c, "heap32", MICROPYTHON32)
                        if v is not None:
                            cases[c]["heap32"] = v
            finally:
                r.stop()
                h.stop()
                mq.stop()

        def do_callgrind():
            r = Responder(pin=False)
            h = Server("http", pin=False)
            mq = Server("mqtt", pin=False)
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
                    port = srv.port if srv else h.port if kind == "http" else mq.port if kind == "mqtt" else r.port
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
                mq.stop()

        def do_rates():
            env["load_rates_start"] = load()
            rate_cases = NET_CASES + tuple(c for c in TELE_CASES + DOWN_CASES if c not in NET_CASES)
            rates = {c: [] for c in rate_cases}
            lats = {c: [] for c in DOWN_CASES}
            for i in range(params["rate_runs"]):
                r = Responder(pin=True)  # one per round: the bound and the stack use the same port
                h = Server("http", pin=True)
                mq = Server("mqtt", pin=True)
                try:
                    for c in rate_cases:  # interleaved, so that load from elsewhere hits all cases alike
                        kind = SERVER_OF.get(c, "coap")
                        srv = Server(kind, pin=True, count=-1, skip=params["rate_warm"]) if kind in ("attr", "rpc") else None
                        port = srv.port if srv else h.port if kind == "http" else mq.port if kind == "mqtt" else r.port
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
                    mq.stop()
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

        mem_result = {}

        def do_memory():
            # tools/min-heap's scenarios on the 32-bit port, then where the app's heap goes
            # (bench/breakdown.py), the heap mapped at about the app's smallest heap.
            try:
                mem = mem_result["v"] = memory.min_heaps(tmp, quick=q, log=lambda s: print(s, file=sys.stderr))
                app_kb = (mem.get("app") or {}).get("kb")
                mem_result["breakdown"] = memory.heap_breakdown(tmp, app_kb)
            except (BenchError, OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
                mem_result["e"] = e

        step("probe", do_probe)
        step("wire", do_wire)
        step("heap", do_heap)
        mem_thread = threading.Thread(target=do_memory, daemon=True)
        mem_thread.start()  # beside callgrind (counts do not depend on load); before the rates
        if not args.no_callgrind:
            step("callgrind", do_callgrind)
        t_mem = time.time()
        mem_thread.join()
        if "e" in mem_result:
            errors.append("memory: %s" % mem_result["e"])
        data["memory"] = mem_result.get("v")
        data["breakdown"] = mem_result.get("breakdown")
        print("bench: %-10s %5.1f s (waited)" % ("memory", time.time() - t_mem), file=sys.stderr)
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
