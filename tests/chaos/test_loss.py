# Store and forward through faults (issue 8): the reference app on the unix port against tbsim
# through tools/udpproxy.py. 20% loss both ways: every sample arrives exactly once; a blackout:
# every sample taken during it arrives afterwards with its original timestamp.
import os
import time

from chaosdev import all_stored, exactly_once, rpc
from tbtest import wait_until

# The 60 s blackout (about 66 s of test time); CHAOS_BLACKOUT_S=15 shortens it for a quick
# local run (the device does the same thing, only with fewer samples queued).
BLACKOUT_S = float(os.environ.get("CHAOS_BLACKOUT_S", "60"))


def test_20_percent_loss_both_ways_every_sample_arrives_exactly_once(tbsim_factory, proxy, device, tmp_path):
    sim = tbsim_factory("--ack-timeout", "0.2")
    px = proxy(sim, loss=0.2, seed=8)
    n = 40
    dev = device(tmp_path, px.port, sim.token, n, telemetry_interval_ms=150)
    assert dev.wait_for("sampling done", 20), dev.output()
    stored = all_stored(sim, n, 30)
    exactly_once(dev, stored)
    st = px.stats
    assert st["up"]["lost"] > 5 and st["down"]["lost"] > 5, st
    # through the lossy link too; the device counts a batch once its answer is in (after the server stored it)
    got = wait_until(lambda: (lambda r: r[1] if r[0] == 200 and r[1]["sent"] >= n else None)(rpc(sim, "chaosStats")),
                     15, interval=0.2)
    assert got, dev.output()
    stats = got
    print("loss 20%%: %d samples taken, %d stored, %d sent by the device (resent after a lost answer: %d), "
          "proxy %s" % (n, len(stored), stats["sent"], stats["sent"] - n, st))


def test_blackout_samples_arrive_afterwards_with_their_timestamps(tbsim_factory, proxy, device, tmp_path):
    sim = tbsim_factory("--ack-timeout", "0.2")
    px = proxy(sim)
    interval = 250
    n = int((BLACKOUT_S + 4) * 1000 / interval)
    # A small RAM queue that spills to state_dir: a long blackout goes to "flash".
    dev = device(tmp_path, px.port, sim.token, n, telemetry_interval_ms=interval,
                 queue={"limit": 16, "spill": True, "batch": 16, "gap_ms": 20, "retry_ms": 250, "retry_max_ms": 2000})
    assert dev.wait_for("telemetry {", 10), dev.output()
    t_on = time.time() * 1000
    px.blackouts.append((time.monotonic() - px.t0, BLACKOUT_S))
    time.sleep(BLACKOUT_S)
    t_off = time.time() * 1000
    assert dev.wait_for("sampling done", 10), dev.output()
    stored = all_stored(sim, n, 30)
    exactly_once(dev, stored)
    during = [ts for ts in dev.samples.values() if t_on + 500 < ts < t_off - 500]
    assert len(during) >= BLACKOUT_S * 1000 / interval - 6, (len(during), dev.output())
    assert any("queued, retrying" in l for l in dev.lines), dev.output()
    assert any("queued samples -> 2.01" in l for l in dev.lines), dev.output()
    assert px.stats["up"]["blackout"] > 0, px.stats
    print("blackout %.0f s: %d samples taken during it, all %d stored with their own ts" % (
        BLACKOUT_S, len(during), len(stored)))
