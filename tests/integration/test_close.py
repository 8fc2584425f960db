# Device.close() after subscribe() (issue 15 item 6): each observation is deregistered (GET with
# Observe=1, RFC 7641 §3.6), and close() waits for neither the response ThingsBoard never sends nor
# the empty ACK it sends 500 ms later (spec §6.4): at most a quarter second per subscription.
import json
import os
import subprocess
import time

import mpy
from tbtest import wait_until

SCRIPT = "tests/integration/mpy/close.py"


def _device(port, token):
    spec = {"host": "127.0.0.1", "port": port, "token": token}
    env = dict(os.environ, MICROPYPATH=mpy.PATH)
    p = subprocess.Popen([mpy.MICROPYTHON, "-X", "heapsize=256K", SCRIPT, json.dumps(spec)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=mpy.ROOT)
    line = p.stdout.readline()
    assert json.loads(line) == {"ev": "ready"}, line + p.stdout.read()
    return p


def _close(p):
    p.stdin.write("\n")
    p.stdin.flush()
    out, _ = p.communicate(timeout=30)
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert lines and lines[-1]["ev"] == "closed", out
    return lines[-1]["ms"]


def test_close_deregisters_both_subscriptions_at_once(tbsim):
    p = _device(tbsim.coap_port, tbsim.token)
    ms = _close(p)
    print("close after subscribe: %d ms" % ms)
    assert ms < 1000, ms  # it was 10 s: 5 s per subscription waiting for a response that never comes
    # tbsim (as ThingsBoard) ends both relations when the Observe=1 GET arrives
    assert wait_until(lambda: tbsim.log_text().count("deregistered (Observe=1)") == 2, 5), tbsim.log_text()


def test_close_with_the_server_silent_is_bounded(tbsim, proxy):
    px = proxy(tbsim)
    p = _device(px.port, tbsim.token)
    px.blackouts.append((time.monotonic() - px.t0, 60.0))  # nothing passes any more, either way
    ms = _close(p)
    print("close with the server silent: %d ms" % ms)
    assert ms < 1000, ms  # two deregistrations, each given up after a quarter second
