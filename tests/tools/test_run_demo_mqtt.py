"""`TRANSPORT=mqtt make run` (tools/run-demo): the reference app over MQTT against tbsim, its uplinks
answered by PUBACKs, the operator reading them back; Ctrl-C stops all of it with status 0. `make run`
itself stays CoAP (tests/tools/test_run_demo.py)."""
import os
import signal
import socket
import subprocess

from tbtest import as_from_a_terminal, stop_after
from test_run_demo import ROOT, free_port


def test_the_demo_runs_over_mqtt():
    env = dict(os.environ, TRANSPORT="mqtt", COAP_PORT=str(free_port(socket.SOCK_DGRAM)),
               HTTP_PORT=str(free_port(socket.SOCK_STREAM)), MQTT_PORT=str(free_port(socket.SOCK_STREAM)))
    p = subprocess.Popen([os.path.join(ROOT, "tools", "run-demo")], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True, preexec_fn=as_from_a_terminal)
    out = []
    timer = stop_after(p, 120)
    try:
        for line in p.stdout:
            out.append(line)
            if line.startswith("[operator]") and "temperature" in line:
                break
        os.killpg(p.pid, signal.SIGINT)
        out += p.stdout.readlines()
        assert p.wait(timeout=30) == 0, "".join(out)
    finally:
        timer.cancel()
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    text = "".join(out)
    assert "the device reports every 5 s over mqtt" in text, text
    assert "[device]   device: MQTT 127.0.0.1:%s" % env["MQTT_PORT"] in text, text
    assert any(x.startswith("[device]   telemetry {") and x.rstrip().endswith("-> PUBACK") for x in out), text
    assert "PUBLISH q1 v1/devices/me/telemetry" in text and "make run: stopped\n" in out, text


def test_an_unknown_transport_is_one_line():
    r = subprocess.run([os.path.join(ROOT, "tools", "run-demo")], env=dict(os.environ, TRANSPORT="xmpp"), cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr == "make run: TRANSPORT=xmpp: coap or mqtt\n", r.stderr
