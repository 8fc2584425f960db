"""The operator side of `make run`: talks to the server only through ThingsBoard's own REST
API paths (so it runs unchanged against a real ThingsBoard given --url and credentials)."""
import argparse
import json
import sys
import time
import urllib.error
import urllib.request


class Rest:
    def __init__(self, url, username, password):
        self.url = url.rstrip("/")
        self.jwt = None
        self.jwt = self.call("POST", "/api/auth/login", {"username": username, "password": password})["token"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.jwt:
            req.add_header("X-Authorization", "Bearer " + self.jwt)
        with urllib.request.urlopen(req, timeout=15) as r:
            text = r.read()
        return json.loads(text) if text else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--username", default="tenant@thingsboard.org")
    p.add_argument("--password", default="tenant")
    p.add_argument("--device", default="demo-device")
    p.add_argument("--every", type=float, default=4.0, help="seconds between operator steps")
    a = p.parse_args(argv)
    rest = Rest(a.url, a.username, a.password)
    dev = rest.call("GET", "/api/tenant/devices?deviceName=" + a.device)
    dev_id = dev["id"]["id"]
    print("watching %s (id %s) through %s/api/plugins/telemetry/..." % (a.device, dev_id, a.url))
    keys = "temperature,humidity,current_fw_version"
    rpc = "/api/plugins/rpc/twoway/" + dev_id
    shared = "/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % dev_id
    # A round of what an operator does from a dashboard, one step every few seconds.
    steps = [
        ("read telemetry", "GET", "/api/plugins/telemetry/DEVICE/%s/values/timeseries?keys=%s&useStrictDataTypes=true"
         % (dev_id, keys), None),
        ("RPC getStatus", "POST", rpc, {"method": "getStatus", "params": {}}),
        ("shared attribute telemetry_interval_ms=2000", "POST", shared, {"telemetry_interval_ms": 2000}),
        ("RPC setGpio", "POST", rpc, {"method": "setGpio", "params": {"pin": 2, "value": 1}}),
        ("RPC getGpio", "POST", rpc, {"method": "getGpio", "params": {"pin": 2}}),
        ("shared attribute telemetry_interval_ms=5000", "POST", shared, {"telemetry_interval_ms": 5000}),
    ]
    i = 0
    while True:
        time.sleep(a.every)
        what, method, path, body = steps[i % len(steps)]
        i += 1
        try:
            got = rest.call(method, path, body)
        except (urllib.error.URLError, OSError) as e:
            print("%s: %s" % (what, e))
            continue
        if what == "read telemetry":
            got = {k: v[0]["value"] for k, v in (got or {}).items() if v}
        print("%s -> %s" % (what, "200" if got is None else json.dumps(got, sort_keys=True)))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
