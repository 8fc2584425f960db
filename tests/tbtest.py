"""Helpers shared by the host tests and bench/: free loopback ports, tbsim as a subprocess on them,
ThingsBoard REST, wait_until. Imported as `tbtest` (a unique name: several folders have a conftest.py)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TBSIM_DEVICE = "Thermo-1"
TBSIM_TOKEN = "A1_TEST_TOKEN"
TBSIM_PROFILE = "Provisioning"
TBSIM_PROVISION_KEY = "PROV_KEY_1"
TBSIM_PROVISION_SECRET = "PROV_SECRET_1"
_BANNER = re.compile(r"tbsim: CoAP coap://([\d.]+):(\d+)\s+REST http://[\d.]+:(\d+)")


def load_tool(name):
    """tools/<name> (a script without .py too, e.g. "board", "min-heap", "bundle.py") as a module."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_").replace(".", "_"),
                                                  os.path.join(REPO, "tools", name))
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(mod)
    return mod


def as_from_a_terminal():
    """Popen's preexec_fn for a process that a test stops as a terminal's Ctrl-C would: SIGINT at its
    default, as a shell gives a foreground command, even where the tests run with SIGINT ignored (a
    script's background job passes that on, and a shell script cannot trap a signal ignored at entry)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_after(p, seconds):
    """A timer that kills p's process group after `seconds` (p started with start_new_session): a read
    to its end then ends too, and the test fails instead of hanging. Cancel it when done."""

    def kill():
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass

    t = threading.Timer(seconds, kill)
    t.daemon = True
    t.start()
    return t


def free_port(kind=socket.SOCK_DGRAM, pair=False):
    """A loopback port that is free now (UDP; kind=socket.SOCK_STREAM for TCP). pair: PORT + 1 is free
    too (libcoap's servers listen for coap on -p PORT and for coaps on PORT + 1). Whoever binds it next
    may still lose it to another process: retry on EADDRINUSE where that matters."""
    while True:
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if not pair:
            return port
        t = socket.socket(socket.AF_INET, kind)
        try:
            t.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
        finally:
            t.close()


def wait_until(predicate, timeout=5.0, interval=0.02):
    """Poll `predicate` until it returns a truthy value (returned) or `timeout` seconds pass (returns None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class RestClient:
    """ThingsBoard REST with login (X-Authorization: Bearer). Methods return parsed JSON (None if empty)."""

    def __init__(self, base_url, username="tenant@thingsboard.org", password="tenant"):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.jwt = None

    def login(self):
        _, body = self.request("POST", "/api/auth/login", {"username": self.username, "password": self.password},
                               auth=False)
        self.jwt = body["token"]
        return self.jwt

    def request(self, method, path, body=None, query=None, auth=True, timeout=30.0):
        """Returns (status, parsed JSON or raw text or None). Does not raise on HTTP error statuses."""
        if auth and self.jwt is None:
            self.login()
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["X-Authorization"] = "Bearer " + self.jwt
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        if not raw:
            return status, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def _ok(self, method, path, body=None, query=None, timeout=30.0):
        status, data = self.request(method, path, body, query, timeout=timeout)
        if status != 200:
            raise AssertionError("%s %s -> %s %r" % (method, path, status, data))
        return data

    def get(self, path, **query):
        return self._ok("GET", path, query=query or None)

    def post(self, path, body=None, timeout=30.0, **query):
        return self._ok("POST", path, body, query or None, timeout=timeout)

    def delete(self, path, **query):
        return self._ok("DELETE", path, query=query or None)

    # conveniences for the seeded device
    def device_id(self, name):
        return self.get("/api/tenant/devices", deviceName=name)["id"]["id"]


class TbSimProcess:
    """A running tbsim. Attributes: host, coap_port, http_port, coap_url, http_url, device_name, token,
    provision_key, provision_secret, rest (RestClient), lines (log lines so far), proc; https_port and
    tls_ca (the test CA's PEM file) when started with --https-port, dtls_port and tls_ca with --dtls-port,
    mqtt_port with --mqtt-port, mqtts_port and tls_ca with --mqtts-port."""

    def __init__(self, args=(), devices=((TBSIM_DEVICE, TBSIM_TOKEN),), timeout=30.0):
        cmd = [sys.executable, "-m", "tbsim", "--host", "127.0.0.1", "--coap-port", "0", "--http-port", "0",
               "--db", ":memory:"]
        for name, token in devices:
            cmd += ["--device", "%s=%s" % (name, token)]
        cmd += ["--profile", "%s=%s:%s" % (TBSIM_PROFILE, TBSIM_PROVISION_KEY, TBSIM_PROVISION_SECRET)]
        cmd += list(args)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.join(REPO, "tools") + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        self.device_name = devices[0][0] if devices else None
        self.token = devices[0][1] if devices else None
        self.provision_key = TBSIM_PROVISION_KEY
        self.provision_secret = TBSIM_PROVISION_SECRET
        self.lines = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        banner = self.wait_for_log("tbsim: CoAP", timeout=timeout)
        m = _BANNER.search(banner or "")
        if m is None:
            self.stop()
            raise RuntimeError("tbsim did not start:\n" + self.log_text())
        self.host = m.group(1)
        self.coap_port = int(m.group(2))
        self.http_port = int(m.group(3))
        self.coap_url = "coap://%s:%d" % (self.host, self.coap_port)
        self.http_url = "http://%s:%d" % (self.host, self.http_port)
        self.rest = RestClient(self.http_url)
        tls = re.search(r"HTTPS https://[\d.]+:(\d+) \(CA (.+)\)", banner)  # with --https-port
        self.https_port = int(tls.group(1)) if tls else None
        self.tls_ca = tls.group(2) if tls else None
        dtls = re.search(r"CoAPS coaps://[\d.]+:(\d+) \(CA (.+?)\)", banner)  # with --dtls-port
        self.dtls_port = int(dtls.group(1)) if dtls else None
        if dtls:
            self.tls_ca = dtls.group(2)
        mqtt = re.search(r"MQTT mqtt://[\d.]+:(\d+)", banner)  # with --mqtt-port
        self.mqtt_port = int(mqtt.group(1)) if mqtt else None
        mqtts = re.search(r"MQTTS mqtts://[\d.]+:(\d+) \(CA (.+?)\)", banner)  # with --mqtts-port
        self.mqtts_port = int(mqtts.group(1)) if mqtts else None
        if mqtts:
            self.tls_ca = mqtts.group(2)

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def coap_uri(self, path):
        """coap://host:port/<path>; `{token}` in path is replaced by the seeded device's token."""
        return "%s/%s" % (self.coap_url, path.lstrip("/").replace("{token}", self.token or ""))

    def log_text(self):
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_log(self, needle, timeout=5.0, start=0):
        """First log line at index >= start containing `needle` (str) or matching it (compiled regex)."""
        deadline = time.monotonic() + timeout
        match = needle.search if hasattr(needle, "search") else (lambda s: needle in s)
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if match(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._cond.wait(left)

    def mark(self):
        """Index to pass as `start` to wait_for_log to look only at lines logged from now on."""
        with self._cond:
            return len(self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reader.join(timeout=2)
