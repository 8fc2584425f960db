# Store and forward over TCP through a blackout (issue 16 item 5, MQTT; HTTP since session 12): the
# reference app on the unix port against tbsim through tests/tcpproxy.py; for BLACKOUT_S the
# connections carry nothing and every new one is reset. Every sample taken, during the blackout too,
# is stored exactly once with its own timestamp once the link is back (MQTT's reconnect waits out the
# supervisor's back-off; HTTP's requests time out, and the queue retries its batch with back-off).
import os
import time

import pytest
from chaosdev import all_stored, exactly_once
from tcpproxy import TcpProxy

BLACKOUT_S = float(os.environ.get("CHAOS_BLACKOUT_S", "60"))  # as tests/chaos/test_loss.py
ANSWER = {"mqtt": "PUBACK", "http": "200"}  # what the device's log line says the server answered


@pytest.mark.parametrize("transport", ["mqtt", "http"])
def test_a_tcp_blackout_samples_arrive_afterwards_with_their_timestamps(tbsim_factory, device, tmp_path, transport):
    sim = tbsim_factory("--%s-port" % transport, "0")
    px = TcpProxy(getattr(sim, transport + "_port"))
    try:
        interval = 250
        n = int((BLACKOUT_S + 4) * 1000 / interval)
        dev = device(tmp_path, px.port, sim.token, n, telemetry_interval_ms=interval, transport=transport,
                     **{transport: {"timeout_ms": 2000}},
                     queue={"limit": 16, "spill": True, "batch": 16, "gap_ms": 20, "retry_ms": 250,
                            "retry_max_ms": 2000})
        answer = ANSWER[transport]
        assert dev.wait_for("-> " + answer, 10), dev.output()
        t_on = time.time() * 1000
        px.block()
        time.sleep(BLACKOUT_S)  # the blackout's length is what is tested
        px.unblock()
        t_off = time.time() * 1000
        assert dev.wait_for("sampling done", 10), dev.output()
        stored = all_stored(sim, n, 90)  # the reconnect waits out the back-off (up to a minute after 60 s)
        exactly_once(dev, stored)
        during = [ts for ts in dev.samples.values() if t_on + 500 < ts < t_off - 500]
        assert len(during) >= BLACKOUT_S * 1000 / interval - 6, (len(during), dev.output())
        assert any("queued samples -> " + answer in line for line in dev.lines), dev.output()
        assert px.refused > 0 and px.dropped > 0, (px.refused, px.dropped)
        print("%s blackout %.0f s: %d samples taken during it, all %d stored with their own ts, %d connections "
              "reset" % (transport, BLACKOUT_S, len(during), len(stored), px.refused))
    finally:
        px.stop()
