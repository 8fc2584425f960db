# tests/unit/bounds_client.py on the unix port: the CoAP client's receive path drops a datagram
# longer than its buffer and one with too many options, refuses a Block2 body over MAX_BODY, goes
# on answering, and its heap is back where it was (issue 8: an error, not a crash, not a leak).
import json

import mpy
from tbtest import free_port


def test_oversized_input_at_the_client():
    r = mpy.run(["tests/unit/bounds_client.py", str(free_port())], heap="192K", timeout=60,
                env={"MICROPYPATH": mpy.ROOT + "/lib:.frozen"})
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["oversized"]["got"] == "after" and out["oversized_count"] == 11  # dropped, the real answer taken
    assert out["options"]["got"] == "after"  # 1000 options: a format error, dropped
    assert out["endless"]["got"] == "BadResponse"  # the body passed MAX_BODY
    assert out["after"] == "ok" and out["rx_error"] is None
    for case in ("oversized", "options", "endless"):
        assert out[case]["grown"] <= 512, (case, out)
