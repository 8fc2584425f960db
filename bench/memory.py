"""The memory figures of `make bench` (bench/run.py; issue 13): on the 32-bit unix port
(.venv/bin/micropython32, a board's object and GC block sizes), the smallest heap of each of
tools/min-heap's scenarios for the firmware as `make build BOARD=UNIX` lays it out (compiled into a
temp dir: build/ is shared with others), set against the heap a board leaves an application; and
where the reference app's heap goes (bench/breakdown.py)."""
import os

import breakdown
from cases import BENCH, BOARDS, MEMORY, MICROPYTHON32, ROOT, memory_key
from procs import BenchError, load_tool, run

# Bisection ranges (KB) where tools/min-heap's defaults do not fit: the 64-bit port needs about twice.
RANGE_64 = {"app": (96, 320), "http": (96, 400), "https": (96, 400), "coaps": (96, 400)}


def build_app(tmp):
    """firmware/ + boards/UNIX + lib/ as `make build BOARD=UNIX` lays them out (tools/board's
    file list), compiled into tmp/app; and its ROMFS image tmp/app.romfs (`make romfs`)."""
    board = load_tool("board")
    out = board.build("UNIX", os.path.join(tmp, "app"))
    board.romfs_image(out, out + ".romfs")
    return out


def min_heaps(tmp, quick=False, log=None):
    """{key: tools/min-heap's result dict (kb, failed_kb, tries, ...)} for every row of cases.MEMORY
    (quick: 4 KB steps, no ROMFS and no 64-bit rows). The https and coaps rows of the 32-bit build,
    which has no ssl, are the http and app runs plus the Python modules TLS adds (an estimate)."""
    mh = load_tool("min-heap")
    app = build_app(tmp)
    image = app + ".romfs"
    out = {}
    for scenario, _, _, rom, port64 in MEMORY:
        k = memory_key(scenario, rom, port64)
        if quick and (rom or port64):
            continue
        if scenario in mh.TLS and not port64:
            continue  # below, from the run that stands in for it
        tries = {}
        lo, hi = RANGE_64.get(scenario, (None, None)) if port64 else (None, None)
        kw = dict(build=app, image=image, step=4 if quick else 1)
        try:
            res = mh.measure(scenario, lo, hi, rom=rom, port64=port64, tries=tries, **kw)
        except (OSError, RuntimeError) as e:
            raise BenchError("min-heap %s: %s" % (k, e))
        res["tries"] = tries
        res["step"] = kw["step"]
        out[k] = res
        if log:
            log("bench: memory %-18s %s KB" % (k, res["kb"]))
    for scenario, stands_in in mh.TLS.items():
        base = out.get(stands_in)
        if base is None:
            continue
        extra = mh.tls_modules(mh.TLS_MODULES[scenario], build=app)
        kb = None if base["kb"] is None else base["kb"] + (extra + 1023) // 1024
        out[scenario] = dict(base, scenario=scenario, estimate=True, stands_in=stands_in, run_kb=base["kb"],
                             tls_modules=list(mh.TLS_MODULES[scenario]), tls_modules_bytes=extra, kb=kb,
                             failed_kb=base["failed_kb"] + (extra + 1023) // 1024, tries={})
    out["hal_extra"] = hal_extra(tmp)
    out["image_bytes"] = os.path.getsize(image)
    out["mpy_bytes"] = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(app) for f in fs)
    return out


def hal_extra(tmp):
    """{build: bytes}: the heap each board's hal (its module, what it imports, a Hal) takes beyond the
    UNIX board's, which tools/min-heap runs (bench/mp/halprobe.py, the port's modules stood in for by
    tests/boards/fakes)."""
    board = load_tool("board")
    probe = os.path.join(BENCH, "mp", "halprobe.py")
    fakes = os.path.join(ROOT, "tests", "boards", "fakes")

    def hal(name):
        build = board.build(name, os.path.join(tmp, "hal-" + name))
        return int(run([MICROPYTHON32, probe, build, fakes]).split()[-1])

    unix = hal("UNIX")
    return {b: hal(b) - unix for _, _, b in BOARDS}


def heap_breakdown(tmp, small_heap_kb=None):
    """bench/breakdown.py on the app built into tmp/app (min_heaps builds it)."""
    try:
        return breakdown.measure(os.path.join(tmp, "app"), small_heap_kb)
    except (OSError, RuntimeError, ValueError) as e:
        raise BenchError("breakdown: %s" % e)
