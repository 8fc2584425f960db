# Killing the device at any step of the bundle slot switch leaves it bootable (issue 4): the apply
# step (unpack into the free slot, atomic pointer switch) and the trial boot are SIGKILLed at
# chosen steps; every following boot must run a complete image, 1.0.0 or 1.0.1, never half of one.
# The kills are driven by the script's own step lines (tests/integration/mpy/ota_apply.py stops at
# the step it is given and waits to be killed), not by time: a loaded machine kills at the same points.
import json
import os
import random
import shutil
import subprocess

import mpy
from test_ota import bundle, bundle_tool


def _boot(cfg):
    r = mpy.run(["tests/integration/mpy/ota_boot.py", cfg], heap="128K", timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_kill_at_random_points_of_the_slot_switch(tmp_path):
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    bundle_tool.install(bundle(tmp_path, "1.0.0"), str(pristine))
    (pristine / "ota").mkdir(exist_ok=True)
    shutil.copy(bundle(tmp_path, "1.0.1"), pristine / "ota" / "fw.part")
    sd = tmp_path / "state"
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"host": "x", "token": "t", "state_dir": str(sd)}))
    env = dict(os.environ, MICROPYPATH=mpy.PATH)
    cmd = [mpy.MICROPYTHON, "-X", "heapsize=128K", "tests/integration/mpy/ota_apply.py", str(sd), "tb-micropython",
           "1.0.1"]

    # The whole thing uninterrupted, and its steps.
    shutil.copytree(pristine, sd)
    r = subprocess.run(cmd, env=env, cwd=mpy.ROOT, capture_output=True, text=True, timeout=30)
    assert "confirmed" in r.stdout, r.stdout + r.stderr
    steps = [l for l in r.stdout.splitlines() if l.startswith("step ")]
    assert _boot(str(cfg)) == {"slot": "b", "version": "1.0.1", "trial": False}
    pointer = [i for i, l in enumerate(steps) if " pointer " in l]
    assert len(pointer) == 3 and len(steps) > 20, steps  # switch, trial boot ("booting"), confirm

    # Every pointer write, the first and last steps, and a seeded sample of the file writes between.
    rng = random.Random(4)
    at = sorted(set(pointer + [0, len(steps) - 1] + rng.sample(range(len(steps)), 16)))
    seen = set()
    for k in at:
        shutil.rmtree(sd)
        shutil.copytree(pristine, sd)
        p = subprocess.Popen(cmd + [str(k)], env=env, cwd=mpy.ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        out = []
        for line in p.stdout:  # until the script says it stopped at step k (or ends: a bug)
            out.append(line.rstrip("\n"))
            if line.startswith("stopped"):
                break
        p.kill()
        p.communicate(timeout=10)
        out = "\n".join(out)
        assert out.endswith("stopped") and ("step %d " % k) in out, (k, out)
        first = _boot(str(cfg))
        assert first["version"] in ("1.0.0", "1.0.1"), (k, steps[k], first, out)
        assert (first["version"] == "1.0.1") == (first["slot"] == "b"), (k, steps[k], first)
        if first["trial"]:
            # that trial boot never confirmed (it died, too): the next boot is the old image again
            assert _boot(str(cfg)) == {"slot": "a", "version": "1.0.0", "trial": False}, (k, steps[k], first)
        # what the boot after the kill runs follows from the pointer writes done before it
        phase = sum(1 for i in pointer if i < k)
        want = [{"slot": "a", "version": "1.0.0", "trial": False},  # before the switch: the old image
                {"slot": "b", "version": "1.0.1", "trial": True},  # switched: the new one, on trial
                {"slot": "a", "version": "1.0.0", "trial": False}][phase]  # its trial boot died: rolled back
        assert first == want, (k, steps[k], first)
        seen.add(phase)
    assert seen == {0, 1, 2}, seen
