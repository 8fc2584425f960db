# httpclient.client.Connection on the unix port, for tests/integration/test_http_hostile.py.
#   micropython http_client.py SPEC.json with {"port": N, "requests": [[method, path, timeout_ms, limit], ..]}
# Prints one JSON line per request: {"status", "body"} or {"error", "message"}, with the
# connection's counters (connects, resent) and the process's open file descriptors (fds).
import asyncio
import json
import os
import sys

from httpclient.client import Connection, resolve


async def main(spec):
    c = Connection("127.0.0.1", spec["port"], addr=resolve("127.0.0.1", spec["port"]))
    for method, path, timeout_ms, limit in spec["requests"]:
        out = {"path": path}
        try:
            body = b"x" * 10 if method == "POST" else None
            status, data = await c.request(method, path, body, None, timeout_ms, limit)
            out["status"] = status
            out["body"] = bytes(data).decode()
        except Exception as e:  # every outcome goes to the test
            out["error"] = type(e).__name__
            out["message"] = str(e)
        out["connects"] = c.connects
        out["resent"] = c.resent
        out["fds"] = len(os.listdir("/proc/self/fd"))
        print(json.dumps(out))
    c.close()


with open(sys.argv[1]) as f:
    asyncio.run(main(json.load(f)))
