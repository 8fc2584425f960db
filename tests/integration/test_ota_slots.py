# Killing the device at any step of the bundle slot switch leaves it bootable (issue 4): the apply
# step (unpack into the free slot, atomic pointer switch) and the trial boot are SIGKILLed at random
# points; every following boot must run a complete image, 1.0.0 or 1.0.1, never half of one.
import json
import os
import random
import shutil
import subprocess
import time

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

    # How long the whole thing takes, uninterrupted.
    shutil.copytree(pristine, sd)
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, cwd=mpy.ROOT, capture_output=True, text=True, timeout=30)
    full = time.monotonic() - t0
    assert "confirmed" in r.stdout, r.stdout + r.stderr
    assert _boot(str(cfg)) == {"slot": "b", "version": "1.0.1", "trial": False}

    rng = random.Random(4)
    seen = set()
    for i in range(24):
        shutil.rmtree(sd)
        shutil.copytree(pristine, sd)
        p = subprocess.Popen(cmd, env=env, cwd=mpy.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(rng.uniform(0, full * 1.1))
        p.kill()
        out = p.communicate(timeout=10)[0]
        first = _boot(str(cfg))
        assert first["version"] in ("1.0.0", "1.0.1"), (i, first, out)
        assert (first["version"] == "1.0.1") == (first["slot"] == "b"), (i, first)
        if first["trial"]:
            # that trial boot never confirmed (it died, too): the next boot is the old image again
            assert _boot(str(cfg)) == {"slot": "a", "version": "1.0.0", "trial": False}, (i, first)
        seen.add(("applied" in out, "confirmed" in out, first["version"], first["trial"]))
    # the kills landed before, inside and after the switch
    assert any(v == "1.0.0" for _, _, v, _ in seen) and any(v == "1.0.1" for _, _, v, _ in seen), seen
