# Wi-Fi loss on a board (issue 8) goes through the board HAL's supervisor (boards/common/wifihal.py):
# the ESP32_GENERIC HAL runs the reference app on the unix port over the doubles of machine,
# network, ntptime and esp32 in tests/boards/fakes (shaped like MicroPython's documented API).
# The association drops (status STAT_BEACON_TIMEOUT, isconnected() False) and, like the radio,
# the proxy passes nothing until the supervisor has joined again (two attempts find no access
# point, the third joins). Samples taken meanwhile arrive afterwards with their timestamps.
import time

from chaosdev import all_stored, exactly_once, history, rpc


def test_wifi_drop_goes_through_the_supervisor_and_loses_no_sample(tbsim_factory, proxy, device, tmp_path):
    sim = tbsim_factory("--ack-timeout", "0.2")
    px = proxy(sim)
    marks = {}

    def on_line(line):
        if line == "wifi down":
            px.blackouts.append((time.monotonic() - px.t0, 3600.0))
            marks["down"] = time.time() * 1000
        elif line == "wifi up":
            px.blackouts.clear()
            marks["up"] = time.time() * 1000

    n = 40
    dev = device(tmp_path, px.port, sim.token, n, board="ESP32_GENERIC", on_line=on_line, spec={"wifi_drop_at": 8},
                 telemetry_interval_ms=200, diagnostics_interval_ms=1000, wifi={"ssid": "lab", "password": "pw"})
    assert dev.wait_for("wifi up", 60), dev.output()
    assert dev.wait_for("sampling done", 60), dev.output()
    stored = all_stored(sim, n, 60)
    exactly_once(dev, stored)
    # the supervisor saw it, rebuilt the link (two failed joins named by status) and heard the server
    # again (after its back-off between rebuilds)
    for text in ("supervisor: server unreachable", "STAT_NO_AP_FOUND", "wifi: connected", "supervisor: server reachable"):
        assert dev.wait_for(text, 10), (text, dev.output())
    # the samples the device took between its own "wifi down" and "wifi up" lines (their order in its
    # output, not the host's clock, which reads the lines a little later on a loaded machine)
    lines = list(dev.lines)
    during = [l for l in lines[lines.index("wifi down"):lines.index("wifi up")] if l.startswith("sample ")]
    assert len(during) >= 3, (marks, dev.output())
    # the diagnostics telemetry: Wi-Fi rebuilds, RSSI from WLAN.status('rssi'), free heap
    rejoins = history(sim, "wifi_rejoins")
    assert rejoins and rejoins[-1][1] >= 1, rejoins
    assert history(sim, "rssi")[-1][1] == -61
    assert history(sim, "free_heap") and history(sim, "retransmissions")
    assert rpc(sim, "getStatus")[0] == 200
    print("wifi drop: %.1f s down, %d samples taken meanwhile, all %d stored" % (
        (marks["up"] - marks["down"]) / 1000, len(during), len(stored)))
