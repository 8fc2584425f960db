# Benchmark client (MicroPython unix port), driven by bench/run.py:
#   micropython -m client <case> <port> <metric> <n> <warm>
# case:   raw / rawnon / rawproto / rawhttp / rawhttpproto / rawmqtt / rawattr / rawrpc (the bounds, bm_raw),
#         araw / transport / exchange / request / device / devnon / devproto / http / httpproto / mqtt /
#         attr / rpc / wait / coro (bm_async), codec / dumps / jsondumps / encode / decode / token /
#         exobj / rxack (bm_steps)
# metric: count (run n, for callgrind), heap (gc.mem_alloc() delta over n, GC off),
#         rate (round trips per second over a window of about n ms)
# Prints one line "RESULT <json>". Only the module of the case is imported, so the
# harness takes as little heap as it can from the stack under test.
import json
import sys


def main():
    case, port, metric, n, warm = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    if case.startswith("raw"):
        import bm_raw

        res = bm_raw.run(case, port, metric, n, warm)
    elif case in ("device", "devnon", "devproto", "http", "httpproto", "mqtt", "attr", "rpc"):
        import asyncio
        import bm_dev

        res = asyncio.run(bm_dev.run(case, port, metric, n, warm))
    elif case in ("araw", "transport", "exchange", "request", "wait", "coro"):
        import asyncio
        import bm_async

        res = asyncio.run(bm_async.run(case, port, metric, n, warm))
    else:
        import bm_steps

        res = bm_steps.run(case, metric, n, warm)
    res["case"] = case
    res["metric"] = metric
    print("RESULT", json.dumps(res))


main()
