# Where the reference app's heap goes (bench/breakdown.py drives it; MicroPython, run from .mpy
# by the 32-bit unix port beside build/UNIX). Stands in for main.py:
#
#   micropython32 -X heapsize=512K -m breakdown MODE CONFIG ORDER_FILE
#
# Both modes start the firmware (firmware/start.py) and, once it has done its work, print what is
# alive: the heap in use and free, the modules loaded, micropython.mem_info(1)'s map of the heap, the
# qstr pools, the tasks created and the queue. MODE run: nothing else (at a board-sized heap, it shows
# the fragmentation there). MODE measure: first import the modules ORDER_FILE names (comma-separated)
# one at a time in that order (bench/breakdown.py puts each one's imports before it): the heap each
# one retains after a collection and the qstr pools' growth; at the end also the buffers reachable
# from the App.
#
# The app's work: its first telemetry answered, then the host (bench/breakdown.py) answers "BD
# READY" with a two-way RPC and a shared attribute update; once the new interval is applied and two
# more samples went out, the measurement is taken ("BD ..." lines, JSON) and the process exits.
import gc
import json
import sys

gc.collect()
BASE = gc.mem_alloc()
MODE, CONFIG = sys.argv[1], sys.argv[2]  # run | measure
with open(sys.argv[3]) as f:
    ORDER = [m for m in f.read().split(",") if m]


def say(kind, value):
    print("BD", kind, json.dumps(value))


def used():
    gc.collect()
    return gc.mem_alloc()


def qstrs(name):
    # the qstr pools' size after name (micropython.qstr_info()'s n_total_bytes: pools and string data)
    import micropython

    print("BD Q", name)
    micropython.qstr_info()


# ---- imports, one at a time -------------------------------------------------------------
rows = []
prev = used()
qstrs("")
for name in ORDER:
    __import__(name)
    if name == "config":  # firmware/start.py imports it for the check and unloads it again
        del sys.modules["config"]
    a = used()
    rows.append((name, a - prev))
    prev = a
    qstrs(name)
if MODE == "measure":
    say("base", BASE)
    say("imports", rows)

# ---- the firmware, watched ----------------------------------------------------------------
import asyncio  # noqa: E402

tasks = []  # (name, task) of every task created from here on
_create = asyncio.create_task


def create_task(coro):
    t = _create(coro)
    tasks.append((repr(coro).split("'")[1] if "'" in repr(coro) else repr(coro), t))
    return t


asyncio.create_task = create_task
apps = []
import app as _appmod  # noqa: E402

_init = _appmod.App.__init__


def _app_init(self, *args, **kw):
    apps.append(self)
    _init(self, *args, **kw)


_appmod.App.__init__ = _app_init
_run = asyncio.run


def _watched_run(coro):
    _create(watch())
    return _run(coro)


asyncio.run = _watched_run


_ALLOC = (0, 2, 4, 6, 8, 10, 12, 17, 23, 29, 37, 47, 59, 73, 97, 127, 167, 223, 293, 389)  # py/map.c


def _blocks(n):
    return (n + 15) // 16 * 16


def _map(n):
    for a in _ALLOC:  # a map grows one step of this table at a time (py/map.c, mp_map_rehash)
        if a >= n:
            return _blocks(8 * a) if a else 0
    return _blocks(8 * n)


def estimate(o):
    """Bytes o itself takes in a 32-bit heap (16-byte blocks), by the sizes of py/obj*.h; an
    estimate (a map's or list's spare room is guessed); None for what is not in the heap or unknown."""
    t = type(o)
    if o is None or t in (bool, int, type) or callable(o) and t.__name__ in ("function", "builtin_function_or_method"):
        return None  # small ints, singletons, classes and functions (module code, counted with it)
    if t is float:
        return 16
    if t in (str, bytes):
        return 16 + _blocks(len(o) + 1) if len(o) > 10 else None  # short ones are mostly qstrs (counted there)
    if t is bytearray:
        return 16 + (_blocks(len(o)) if len(o) else 0)
    if t is memoryview:
        return 16
    if t is tuple:
        return _blocks(8 + 4 * len(o)) if o else None
    if t is list:
        return 16 + _blocks(4 * max(4, len(o)))
    if t is dict:
        return 16 + _map(len(o))
    if t.__name__ == "bound_method":
        return 16
    if hasattr(o, "__dict__"):
        return 16 + _map(len(o.__dict__))
    return None


def owners(root, depth=3, limit=20000):
    """The estimated bytes of every object reachable from root through instance attributes, lists,
    tuples and dicts, each counted once, under the path (cut to `depth` attributes) that reached it
    first; and the buffers (bytearray, bytes, memoryview) of 64 bytes or more with their paths."""
    seen = set()
    sums = {}
    bufs = []
    todo = [("app", root)]
    while todo and len(seen) < limit:
        path, o = todo.pop(0)
        if id(o) in seen:
            continue
        seen.add(id(o))
        size = estimate(o)
        if size is None and type(o) not in (list, tuple, dict) and not hasattr(o, "__dict__"):
            continue
        key = ".".join(path.split(".")[:depth])
        sums[key] = sums.get(key, 0) + (size or 0)
        if isinstance(o, (bytearray, bytes, memoryview)):
            if size >= 64:
                bufs.append((path, type(o).__name__, size))
            continue
        if isinstance(o, (list, tuple)):
            todo.extend(("%s[%d]" % (path, i), v) for i, v in enumerate(o))
        elif isinstance(o, dict):
            todo.extend(("%s[%r]" % (path, k), v) for k, v in o.items())
        elif hasattr(o, "__dict__") and not isinstance(o, type):
            try:
                todo.extend(("%s.%s" % (path, k), v) for k, v in o.__dict__.items())
            except (AttributeError, TypeError):
                pass
    bufs.sort(key=lambda x: -x[2])
    return sorted(sums.items(), key=lambda x: -x[1]), bufs


async def watch():
    while not apps or getattr(apps[0], "sent", 0) < 1:
        await asyncio.sleep_ms(20)
    app = apps[0]
    say("ready", used())
    print("BD READY")
    interval = app.interval_ms
    while app.interval_ms == interval:  # the host's RPC, then its attribute update
        await asyncio.sleep_ms(20)
    fw = app.forward
    n = fw.sent
    while fw.sent < n + 2:
        await asyncio.sleep_ms(20)
    import micropython

    gc.collect()
    say("running", {"used": gc.mem_alloc(), "free": gc.mem_free(), "modules": sorted(k for k in sys.modules)})
    print("BD MEMINFO")
    gc.collect()
    micropython.mem_info(1)
    print("BD MEMINFO END")
    qstrs("running")
    say("tasks", [(name, t.done()) for name, t in tasks])
    say("queue", {"len": len(fw.queue), "limit": getattr(fw.queue, "limit", None)})
    if MODE == "measure":
        sums, bufs = owners(app)
        say("owners", sums)
        say("buffers", bufs)
    print("BD END")
    sys.exit(0)


sys.argv[:] = ["main.py", CONFIG]
import bootslot  # noqa: E402

bootslot.select(CONFIG)
import start  # noqa: E402,F401  (runs the firmware)
