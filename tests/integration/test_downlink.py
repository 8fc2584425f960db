# The Observe loop on the unix port against tbsim (issue 3; spec §6, §7): shared-attribute
# pushes and the cache, server-side RPC, and keeping both subscriptions alive through 2.02,
# a server restart, a link blackout, duplicated and reordered notifications, a dead server.
import json
import os
import socket
import subprocess
import threading
import time

import pytest
from aiocoap.message import Message
from aiocoap.numbers import Code, Type

import mpy
from tbtest import free_port, wait_until

SCRIPT = "tests/integration/mpy/downlink.py"
# Short timers so that every fault is noticed within a second or two.
FAST_COAP = {"ack_timeout_ms": 200, "max_retransmit": 2, "timeout_ms": 5000}


class DeviceProc:
    """tests/integration/mpy/downlink.py in the background; .events are its JSON lines."""

    def __init__(self, port, token, heap="128K", **spec):
        spec.setdefault("coap", FAST_COAP)
        spec.update(host="127.0.0.1", port=port, token=token)
        env = dict(os.environ, MICROPYPATH=mpy.PATH)
        cmd = [mpy.MICROPYTHON, "-X", "heapsize=" + heap, SCRIPT, json.dumps(spec)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=mpy.ROOT)
        self.events = []
        self.raw = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        assert self.wait(lambda e: e["ev"] == "ready", 30), self.output()

    def _read(self):
        for line in self.proc.stdout:
            self.raw.append(line.rstrip("\n"))
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def mark(self):
        return len(self.events)

    def find(self, pred, start=0):
        return [e for e in self.events[start:] if pred(e)]

    def wait(self, pred, timeout=10, start=0):
        return wait_until(lambda: next(iter(self.find(pred, start)), None), timeout)

    def logged(self, text, start=0, timeout=10):
        return self.wait(lambda e: e["ev"] == "log" and text in e["text"], timeout, start)

    def output(self):
        return "\n".join(self.raw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        self._t.join(timeout=2)
        if os.environ.get("SHOW_DEVICE"):  # debugging: the device's own lines
            print(self.output())


@pytest.fixture
def devices():
    started = []

    def start(*args, **kw):
        d = DeviceProc(*args, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def rpc(sim, method, params=None, timeout_ms=5000):
    """Two-way RPC through REST; (status, reply)."""
    did = sim.rest.device_id(sim.device_name)
    return sim.rest.request("POST", "/api/plugins/rpc/twoway/" + did,
                            {"method": method, "params": params or {}, "timeout": timeout_ms},
                            timeout=timeout_ms / 1000 + 5)


def state(sim):
    status, body = rpc(sim, "state")
    assert status == 200, (status, body)
    return body


def set_shared(sim, values):
    did = sim.rest.device_id(sim.device_name)
    sim.rest.post("/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % did, values)


def delete_shared(sim, *keys):
    did = sim.rest.device_id(sim.device_name)
    sim.rest.delete("/api/plugins/telemetry/DEVICE/%s/SHARED_SCOPE" % did, keys=",".join(keys))


def server_shared(sim):
    did = sim.rest.device_id(sim.device_name)
    return {a["key"]: a["value"] for a in sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/attributes/"
                                                       "SHARED_SCOPE" % did)}


def has_shared(dev, expected, start=0, timeout=10):
    """The catch-all callback has reported the cache reaching `expected` (after `start`)."""
    def check():
        seen = {}
        for e in dev.find(lambda e: e["ev"] == "attrs"):
            seen.update(e["changed"])
            for k in e["deleted"]:
                seen.pop(k, None)
        return seen == expected and dev.find(lambda e: e["ev"] == "attrs", start)
    return wait_until(check, timeout)


# ---- attributes and RPC -------------------------------------------------------------------

def test_attribute_push_callbacks_deletion_and_cache(tbsim, devices):
    set_shared(tbsim, {"target": 21.5, "mode": "eco"})
    dev = devices(tbsim.coap_port, tbsim.token, keys=["target", "mode"])
    # The subscription's first answer is the whole state (spec §6.2): callbacks for each key.
    assert has_shared(dev, {"target": 21.5, "mode": "eco"}), dev.output()
    assert dev.find(lambda e: e == {"ev": "attr", "key": "target", "value": 21.5})
    m = dev.mark()
    set_shared(tbsim, {"target": 22, "extra": [1, 2]})
    assert dev.wait(lambda e: e == {"ev": "attrs", "changed": {"target": 22, "extra": [1, 2]}, "deleted": []},
                    start=m), dev.output()
    assert dev.wait(lambda e: e == {"ev": "attr", "key": "target", "value": 22}, start=m), dev.output()
    assert not dev.find(lambda e: e.get("key") == "mode", m)  # unchanged keys fire nothing
    m = dev.mark()
    delete_shared(tbsim, "mode")
    assert dev.wait(lambda e: e == {"ev": "attr", "key": "mode", "value": None}, start=m), dev.output()
    # the catch-all callback runs right after the per-key one: its line may still be on its way
    assert dev.wait(lambda e: e == {"ev": "attrs", "changed": {}, "deleted": ["mode"]}, start=m), dev.output()
    assert state(tbsim)["shared"] == server_shared(tbsim) == {"target": 22, "extra": [1, 2]}


def test_rpc_round_trip_unknown_method_and_handler_error(tbsim, devices):
    dev = devices(tbsim.coap_port, tbsim.token)
    assert rpc(tbsim, "echo", {"x": [1, 2], "s": "é"}) == (200, {"x": [1, 2], "s": "é"})
    status, body = rpc(tbsim, "noSuchMethod", {"a": 1})
    assert status == 200 and "unknown method" in body["error"], body
    status, body = rpc(tbsim, "fail")
    assert status == 200 and body == {"error": "ValueError: boom"}, body
    # The loop goes on after both.
    assert rpc(tbsim, "echo", {"n": 3}) == (200, {"n": 3})
    st = state(tbsim)
    assert st["runs"] == {"echo": 2, "fail": 1} and st["repeats"] == 0, st
    assert dev.proc.poll() is None


def push_shared(sim, dev, values, seen, tries=5):
    """Post shared attributes until `seen()` is true. Over CoAP the first post is enough; an
    HTTP long poll is re-sent after each answer, and the server does not queue an update
    made while no poll waits (spec §15), so a post in that moment is posted again."""
    for _ in range(tries):
        set_shared(sim, values)
        if wait_until(seen, 3):
            return True
    return False


def in_shared(sim, key, value):
    """The device's copy of its shared attributes has key == value (asked by RPC)."""
    return lambda: state(sim)["shared"].get(key) == value


@pytest.mark.parametrize("transport", ["coap", "http"])
def test_raising_callbacks_and_handlers_are_logged_and_the_loop_goes_on(tbsim, devices, transport):
    # Issue 15 item 1: a callback that raised ended the dispatcher task; from then on RPCs timed
    # out at the server and dev.shared stood still, while telemetry went on.
    port = tbsim.http_port if transport == "http" else tbsim.coap_port
    dev = devices(port, tbsim.token, heap="192K" if transport == "http" else "128K", transport=transport)
    n = 0

    def still_served():
        # The next RPC is answered and the next attribute update reaches dev.shared.
        nonlocal n
        n += 1
        assert rpc(tbsim, "echo", {"n": n}) == (200, {"n": n}), dev.output()
        assert push_shared(tbsim, dev, {"seq": n}, in_shared(tbsim, "seq", n)), dev.output()

    still_served()
    # A per-key callback (ZeroDivisionError, as in the issue): one line naming the key; the cache took the value.
    m = dev.mark()
    assert push_shared(tbsim, dev, {"crash_key": 1}, lambda: dev.find(
        lambda e: e["ev"] == "log" and "crash_key" in e["text"] and "ZeroDivisionError" in e["text"], m)), dev.output()
    line = dev.logged("ZeroDivisionError", m)["text"]
    assert line.startswith("attributes: on_attribute('crash_key') raised ZeroDivisionError"), line
    # ... and the catch-all callbacks registered after it still ran.
    assert dev.wait(lambda e: e["ev"] == "attrs" and e["changed"] == {"crash_key": 1}, start=m), dev.output()
    assert state(tbsim)["shared"]["crash_key"] == 1
    still_served()
    # An async per-key callback, raising after an await.
    m = dev.mark()
    assert push_shared(tbsim, dev, {"crash_async": 1}, lambda: dev.find(
        lambda e: e["ev"] == "log" and "crash_async" in e["text"] and "raised" in e["text"], m)), dev.output()
    assert dev.logged("attributes: on_attribute('crash_async') raised KeyError", m), dev.output()
    still_served()
    # A catch-all callback; the one registered after it still runs.
    m = dev.mark()
    assert push_shared(tbsim, dev, {"crash_all": 1}, lambda: dev.find(
        lambda e: e["ev"] == "attrs" and e["changed"] == {"crash_all": 1}, m)), dev.output()
    line = dev.logged("catch-all boom", m)["text"]
    assert line == "attributes: on_attributes callback raised RuntimeError: catch-all boom", line
    still_served()
    # RPC handlers, plain and async: answered {"error": ...}, one line naming the method.
    m = dev.mark()
    assert rpc(tbsim, "fail") == (200, {"error": "ValueError: boom"})
    assert dev.logged("rpc: 'fail' raised ValueError: boom", m), dev.output()
    still_served()
    m = dev.mark()
    status, body = rpc(tbsim, "failAsync")
    assert status == 200 and body["error"].startswith("ZeroDivisionError"), (status, body)
    assert dev.logged("rpc: 'failAsync' raised ZeroDivisionError", m), dev.output()
    still_served()
    st = state(tbsim)
    assert st["failures"] == 5 and st["runs"]["failAsync"] == 1, st
    assert not [x for x in dev.raw if "Traceback" in x or "exception" in x], dev.output()
    assert dev.proc.poll() is None


class RivalPeer:
    """Another subscriber from another port with its own tokens (a second copy of the device):
    ThingsBoard keeps one subscription per device and ends the old one with 2.02 (spec §6.3)."""

    def __init__(self, port):
        self.server = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.got = []
        self.running = True
        self._mid = 1000
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def subscribe(self, path, token):
        msg = Message(code=Code.GET, mtype=Type.CON, uri_path=tuple(path.split("/")), observe=0)
        self._mid += 1
        msg.mid = self._mid
        msg.token = token
        self.sock.sendto(msg.encode(), self.server)

    def _run(self):
        while self.running:
            try:
                data = self.sock.recv(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            msg = Message.decode(data)
            if msg.mtype == Type.CON:
                ack = Message(code=Code.EMPTY, mtype=Type.ACK)
                ack.mid = msg.mid
                self.sock.sendto(ack.encode(), self.server)
            self.got.append(msg)

    def codes(self, token):
        return [m.code for m in self.got if m.token == token]

    def close(self):
        self.running = False
        self._t.join(timeout=2)
        self.sock.close()


def test_resubscribes_after_2_02_and_runs_a_resent_rpc_id_once(tbsim, devices, tmp_path):
    dev = devices(tbsim.coap_port, tbsim.token)
    base = "api/v1/%s/" % tbsim.token
    result = {}
    # The handler runs until the test says so (a file appears), not for a fixed time: the device's
    # re-subscription (after a back-off) must find it still running on a loaded machine too.
    go = tmp_path / "go"
    slow = threading.Thread(target=lambda: result.update(r=rpc(tbsim, "slow", {"ms": 30000, "until": str(go)},
                                                               40000)))
    slow.start()
    rival = RivalPeer(tbsim.coap_port)
    try:
        assert dev.wait(lambda e: e["ev"] == "run" and e["method"] == "slow"), dev.output()
        m, sm = dev.mark(), tbsim.mark()
        # A rival takes both subscriptions: the device's are ended with 2.02, and the pending RPC
        # (delivered, not yet answered) goes to the rival (spec §7).
        rival.subscribe(base + "rpc", b"rv-rpc")
        rival.subscribe(base + "attributes", b"rv-attr")
        assert dev.logged("rpc: subscription ended (2.02)", m), dev.output()
        assert dev.logged("attributes: subscription ended (2.02)", m), dev.output()
        # The device subscribes again (back-off ~1 s), which ends the rival's with 2.02 in turn,
        # and the same RPC id comes back to the device while its handler still runs.
        assert wait_until(lambda: Code.DELETED in rival.codes(b"rv-rpc") and Code.DELETED in rival.codes(b"rv-attr"),
                          20), rival.got
        # the device has acknowledged the RPC sent to it again: an ACK after the server ended the
        # rival's rpc subscription, from another port than the rival's
        theirs = "127.0.0.1:%d " % rival.sock.getsockname()[1]

        def acked_again():
            lines = tbsim.lines[sm:]
            ended = next((i for i, l in enumerate(lines) if "2.02 Deleted" in l and b"rv-rpc".hex() in l), None)
            return ended is not None and any("ACK rpc notification" in l and theirs not in l for l in lines[ended:])

        assert wait_until(acked_again, 20), tbsim.log_text()
        go.write_text("")
        slow.join(45)
        assert result["r"] == (200, {"slow": 30000}), result
        assert dev.logged("rpc", m) and wait_until(lambda: len(dev.find(
            lambda e: e["ev"] == "log" and e["text"].startswith("rpc ") and "slow(" in e["text"])) == 2, 5), \
            dev.output()
    finally:
        rival.close()
    st = state(tbsim)
    assert st["runs"] == {"slow": 1} and st["repeats"] == 1, st  # run once, the cached reply sent again
    # The attribute subscription is the device's again.
    m = dev.mark()
    set_shared(tbsim, {"after": 1})
    assert dev.wait(lambda e: e["ev"] == "attrs" and e["changed"] == {"after": 1}, start=m), dev.output()


def _restartable(tbsim_factory, tmp_path):
    port = free_port()
    args = ("--coap-port", str(port), "--db", str(tmp_path / "tbsim.sqlite"), "--ack-timeout", "0.2")
    return port, lambda: tbsim_factory(*args)


def test_resubscribes_after_a_tbsim_restart(tbsim_factory, devices, tmp_path):
    port, start = _restartable(tbsim_factory, tmp_path)
    sim = start()
    dev = devices(port, sim.token, silence_ms=1500, keepalive_ms=1000)
    set_shared(sim, {"v": 1, "gone": True})
    assert has_shared(dev, {"v": 1, "gone": True}), dev.output()
    sim.stop()
    sim = start()  # same port, same database: the device still exists, its subscriptions do not
    m = sim.mark()
    set_shared(sim, {"v": 2})
    delete_shared(sim, "gone")
    # Nobody is subscribed on the new server: the device notices the silence and subscribes
    # again; the first answer (the whole state) makes its cache equal to the server's.
    assert sim.wait_for_log("GET attributes Observe=0", timeout=30, start=m), sim.log_text()
    assert has_shared(dev, {"v": 2}, timeout=30), dev.output()
    assert rpc(sim, "echo", {"back": True}) == (200, {"back": True})
    assert state(sim)["shared"] == server_shared(sim) == {"v": 2}


def test_keepalive_ping_detects_a_dead_server_and_resubscribes_when_it_returns(tbsim_factory, devices, tmp_path):
    port, start = _restartable(tbsim_factory, tmp_path)
    sim = start()
    dev = devices(port, sim.token, keepalive_ms=500)
    set_shared(sim, {"v": 1})
    assert has_shared(dev, {"v": 1}), dev.output()
    m = dev.mark()
    sim.stop()
    # No traffic for keepalive_ms: an empty CON; no answer: the link is re-opened (spec-free: RFC 7252 §4.3).
    assert dev.logged("keepalive: no answer to a ping", m, timeout=10), dev.output()
    time.sleep(1)
    sim = start()
    set_shared(sim, {"v": 3})
    assert has_shared(dev, {"v": 3}, timeout=15), dev.output()
    assert rpc(sim, "echo", {"n": 1}) == (200, {"n": 1})
    st = state(sim)
    assert st["reconnects"] >= 1 and st["pings"] >= 1, st


# ---- through tools/udpproxy.py --------------------------------------------------------------



def test_link_blackout_ends_the_server_side_and_the_device_resubscribes(tbsim_factory, devices, proxy):
    sim = tbsim_factory("--ack-timeout", "0.1", "--max-retransmit", "2")
    px = proxy(sim)
    dev = devices(px.port, sim.token, keepalive_ms=500)
    set_shared(sim, {"v": 1})
    assert has_shared(dev, {"v": 1}), dev.output()
    m, sm = dev.mark(), sim.mark()
    # Nothing passes, either way, until both ends have noticed (events, not a fixed 3 s: on a loaded
    # machine the ping's retransmissions could outlast a timed blackout and be answered).
    px.blackouts.append((time.monotonic() - px.t0, 3600.0))
    set_shared(sim, {"v": 2, "during": "blackout"})
    # The CON notification is never acknowledged: the server drops every relation of that peer (spec §6.4).
    assert sim.wait_for_log("CON notification never acknowledged", timeout=30, start=sm), sim.log_text()
    assert dev.logged("keepalive: no answer to a ping", m, timeout=30), dev.output()
    px.blackouts.clear()
    # After the blackout: a new socket, new subscriptions, and the cache catches up with what was missed.
    assert has_shared(dev, {"v": 2, "during": "blackout"}, start=m, timeout=15), dev.output()
    assert rpc(sim, "echo", {"ok": 1}) == (200, {"ok": 1})
    assert state(sim)["shared"] == server_shared(sim)
    assert px.stats["up"]["blackout"] > 0 and px.stats["down"]["blackout"] > 0


def test_duplicated_and_reordered_notifications_keep_the_newest(tbsim, devices, proxy):
    # NON subscriptions get NON notifications (spec §3): no message-layer dedup, so every
    # duplicate and every late one meets the RFC 7641 §3.4 freshness rule.
    # A held notification waits for the next one to overtake it however slowly the REST posts
    # come (the default 100 ms hold would let a loaded machine release it first: no reordering).
    px = proxy(tbsim, dup=(0, 0.5), reorder=(0, 0.4), seed=7, reorder_hold_ms=5000)
    dev = devices(px.port, tbsim.token, con=False, keys=["n"])
    n = 30
    for i in range(1, n + 1):
        set_shared(tbsim, {"n": i})
    # the last one may itself be held: then it goes out after the hold
    assert dev.wait(lambda e: e == {"ev": "attr", "key": "n", "value": n}, 30), dev.output()
    time.sleep(0.3)  # let late copies arrive
    seen = [e["value"] for e in dev.find(lambda e: e["ev"] == "attr" and e["key"] == "n")]
    assert seen == sorted(set(seen)) and seen[-1] == n, seen  # never older, never twice
    st = px.stats["down"]
    assert st["dup"] >= 5 and st["reordered"] >= 5, st
    assert len(seen) < n, (seen, st)  # some arrived after a newer one and were dropped as stale
    assert state(tbsim)["shared"] == {"n": n}


# ---- the reference firmware (DESIGN §3) -------------------------------------------------------

def sample_times(sim):
    """The timestamps of every stored temperature sample, oldest first."""
    did = sim.rest.device_id(sim.device_name)
    got = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did, keys="temperature", startTs="0",
                       endTs=str(int(time.time() * 1000) + 60000), limit="10000", orderBy="ASC")
    return [int(p["ts"]) for p in got.get("temperature", [])]


def test_firmware_rpc_methods_reboot_and_live_telemetry_interval(tbsim, tmp_path):
    from test_firmware import Device as Firmware, write_config

    fw = Firmware(write_config(tmp_path, port=tbsim.coap_port, token=tbsim.token, telemetry_interval_ms=300))
    try:
        assert fw.wait_for('"temperature"'), fw.output()
        assert wait_until(lambda: rpc(tbsim, "setGpio", {"pin": 5, "value": 1}, 5000)[0] == 200, 5), fw.output()
        assert rpc(tbsim, "getGpio", {"pin": 5}) == (200, {"pin": 5, "value": 1})
        status, st = rpc(tbsim, "getStatus")
        assert status == 200 and st["fw_title"] == "tb-micropython" and st["rpc"] >= 2 and st["sent"] >= 1, st
        status, body = rpc(tbsim, "selfDestruct")
        assert status == 200 and "unknown method" in body["error"], body

        def gaps_after(k):
            # The gaps between the next k samples' own timestamps (the unix port's clock is the host's)
            # as the server stored them, from the moment the device said it changed its interval: the
            # device's period, however slowly a loaded machine runs the test around it.
            t0 = time.time() * 1000
            got = wait_until(lambda: (lambda ts: ts if len(ts) >= k else None)(
                [t for t in sample_times(tbsim) if t > t0]), 30, 0.1)
            assert got, fw.output()
            return [b - a for a, b in zip(got, got[1:])]

        set_shared(tbsim, {"telemetry_interval_ms": 1500})
        assert fw.wait_for("telemetry interval: 1500 ms"), fw.output()
        gaps = gaps_after(3)
        assert min(gaps) >= 1450, gaps  # never sooner than its period (the timer may wake a few ms early)
        set_shared(tbsim, {"telemetry_interval_ms": "fast"})
        assert fw.wait_for("telemetry_interval_ms: ignoring 'fast'"), fw.output()
        delete_shared(tbsim, "telemetry_interval_ms")  # back to the configured period
        assert fw.wait_for("telemetry interval: 300 ms"), fw.output()
        gaps = gaps_after(4)
        assert max(gaps) < 1000, gaps  # 300 ms apart, not the 1500 of before (bound far from 300: a loaded machine)

        assert rpc(tbsim, "reboot") == (200, {"rebooting": True})
        assert fw.wait_for("run-device: reset, booting again"), fw.output()
        # The new boot subscribes again: RPCs reach it (the pin state is gone with the process).
        assert wait_until(lambda: rpc(tbsim, "getGpio", {"pin": 5}, 5000) == (200, {"pin": 5, "value": 0}), 10)
    finally:
        fw.stop()


def test_firmware_in_psm_gets_what_was_sent_while_it_slept_after_its_next_uplink(tbsim_factory, tmp_path):
    from test_firmware import Device as Firmware, write_config

    sim = tbsim_factory("--power-mode", "PSM", "--psm-activity-timer-ms", "800")
    fw = Firmware(write_config(tmp_path, port=sim.coap_port, token=sim.token, telemetry_interval_ms=6000,
                               power={"mode": "psm", "window_ms": 800}))

    def server_says_asleep():
        # tbsim's last word on the device since its last request (every request is an uplink) is "asleep"
        for line in reversed(list(sim.lines)):
            if " power PSM: " in line or " %s " % sim.device_name in line:
                return " power PSM: " in line and line.endswith(" asleep")
        return False

    try:
        # Both ends asleep (the device's line, then tbsim's): the device sleeps about 5 s more, far
        # longer than the REST calls below take on a loaded machine.
        assert fw.wait_for("power: psm, sleeping", 20), fw.output()
        assert wait_until(server_says_asleep, 10), sim.log_text()
        n = len(fw.lines)
        mark = sim.mark()
        # While the device sleeps: the server queues the update and holds the RPC (spec §13).
        set_shared(sim, {"telemetry_interval_ms": 7000})
        out = []
        t = threading.Thread(target=lambda: out.append(rpc(sim, "setGpio", {"pin": 2, "value": 1}, 20000)))
        t.start()
        assert sim.wait_for_log("queued: device asleep", timeout=10, start=mark), sim.log_text()
        assert sim.wait_for_log("held: device asleep", timeout=10, start=mark), sim.log_text()
        t.join(25)
        assert out == [(200, {"pin": 2, "value": 1})], (out, fw.output())
        assert fw.wait_for("telemetry interval: 7000 ms"), fw.output()
        # the RPC's line comes after its reply is sent, which the REST caller may have had first
        assert fw.wait_for(" setGpio({"), fw.output()
        # ... and both reached it only after it woke (and reported: the uplink that opens the window).
        after = fw.lines[n:]
        awake = next(i for i, x in enumerate(after) if "power: awake" in x)
        report = next(i for i, x in enumerate(after) if '"temperature"' in x)
        got = next(i for i, x in enumerate(after) if "telemetry interval: 7000 ms" in x)
        ran = next(i for i, x in enumerate(after) if x.startswith("rpc ") and "setGpio" in x)
        assert awake < report and awake < got and awake < ran, after
        assert fw.wait_for("power: psm, sleeping", timeout=5)
    finally:
        fw.stop()
