"""What tools/tbsim/README.md says about npm coap-cli 0.7.1 (issue 15 item 12), checked against tbsim
so the note goes stale loudly: `coap get` drops the query string, and `coap get -o .../rpc` never
acknowledges an RPC notification. And the README no longer lists DTLS as not modelled."""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COAP_CLI = os.path.join(ROOT, "node_modules", ".bin", "coap")
needs_coap_cli = pytest.mark.skipif(not os.path.exists(COAP_CLI) or shutil.which("node") is None,
                                    reason="npm coap-cli not installed (make setup)")


def tbsim_readme():
    with open(os.path.join(ROOT, "tools", "tbsim", "README.md"), encoding="utf-8") as f:
        return f.read()


def test_the_readme_notes_the_quirks_and_dtls_is_modelled():
    text = tbsim_readme()
    not_modelled = text[text.index("Not modelled:"):]
    assert "DTLS" not in not_modelled.split(". ")[0], not_modelled  # the list, up to its full stop
    assert "query string" in text and "never acknowledges" in text


@needs_coap_cli
def test_coap_get_drops_the_query_string(tbsim):
    tbsim.rest.post("/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % tbsim.rest.device_id("Thermo-1"),
                    {"a": 1, "b": 2})
    r = subprocess.run([COAP_CLI, "get", tbsim.coap_uri("api/v1/{token}/attributes?sharedKeys=a")],
                       capture_output=True, text=True, timeout=30)
    assert '{"shared":{"a":1,"b":2}}' in r.stdout, r.stdout + r.stderr  # both keys: no sharedKeys arrived
    assert tbsim.wait_for_log(re.compile(r"CON GET attributes Thermo-1 -> 2\.05")) is not None, tbsim.log_text()


def test_coap_get_observe_never_acknowledges_an_rpc(tbsim_factory):
    if not os.path.exists(COAP_CLI) or shutil.which("node") is None:
        pytest.skip("npm coap-cli not installed (make setup)")
    sim = tbsim_factory("--rpc-ack-timeout", "1")
    proc = subprocess.Popen([COAP_CLI, "get", "-o", sim.coap_uri("api/v1/{token}/rpc")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert sim.wait_for_log("GET rpc Observe=0") is not None, sim.log_text()
        did = sim.rest.device_id("Thermo-1")
        sim.rest.post("/api/plugins/rpc/oneway/" + did, {"method": "ping", "params": {}, "persistent": True,
                                                         "timeout": 30000})
        assert sim.wait_for_log(re.compile(r"NOTIFY rpc .*\"method\":\"ping\"")) is not None, sim.log_text()
        # no ACK of the notification: the delivery times out, where a device's ACK is logged at once
        assert sim.wait_for_log("delivery TIMEOUT", timeout=10) is not None, sim.log_text()
        assert "ACK rpc notification" not in sim.log_text()
    finally:
        proc.terminate()
        proc.wait(5)
