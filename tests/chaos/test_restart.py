# tbsim restarted under the reference app (issue 8): samples taken while the server is gone
# arrive afterwards, once each, and the observations (RPC, attributes) work again within the
# re-registration time. The library-level re-subscription after a restart (silence, keep-alive)
# is tests/integration/test_downlink.py; this is the app with its store-and-forward queue.
import time

from chaosdev import all_stored, exactly_once, rpc
from tbtest import free_port, wait_until


def test_tbsim_restart_samples_kept_and_rpc_back_within_reregistration(tbsim_factory, device, tmp_path):
    port = free_port()
    args = ("--coap-port", str(port), "--db", str(tmp_path / "tbsim.sqlite"), "--ack-timeout", "0.2")
    sim = tbsim_factory(*args)
    n = 60
    dev = device(tmp_path, port, sim.token, n, telemetry_interval_ms=200)
    assert rpc(sim, "getStatus")[0] == 200, dev.output()
    sim.stop()
    # Nobody serves the port (ICMP port unreachable: a link fault) until the device has said the link is
    # down and taken 15 samples more: counted from its own lines, so a loaded machine has the same outage.
    k, mark = max(dev.samples, default=0), len(dev.lines)
    assert dev.wait_for("link down", 30, start=mark), dev.output()
    assert wait_until(lambda: max(dev.samples) >= min(k + 15, n), 60), dev.output()
    sim = tbsim_factory(*args)  # same port, same database: the device is known, its observations are not
    t0 = time.monotonic()
    # The device sees the fault, opens a new socket and registers both observations again (the
    # observation's back-off, at most a few seconds after so short an outage); then RPC works.
    got = wait_until(lambda: rpc(sim, "getStatus", timeout_ms=1000)[0] == 200, 20, interval=0.2)
    took = time.monotonic() - t0
    assert got, dev.output()
    assert sim.wait_for_log("GET attributes Observe=0", timeout=5), sim.log_text()
    assert dev.wait_for("sampling done", 60), dev.output()
    stored = all_stored(sim, n, 60)
    exactly_once(dev, stored)
    status, st = rpc(sim, "getStatus")
    assert status == 200 and st["reconnects"] >= 1, st
    print("tbsim restart: RPC answered %.1f s after the server came back; %d samples stored once" % (took, len(stored)))
