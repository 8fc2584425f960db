# tests/unit/sched_unjam.py on the unix ports: a receive task whose wait finds no heap neither
# crashes the process (MicroPython 1.28's poll.register() leaves an empty entry that the next
# poll() dereferences: a segmentation fault without coap.sched.unjam()) nor stops receiving.
import json
import os
import subprocess

import pytest

import mpy
from tbtest import free_port

PORTS = {"64-bit": mpy.MICROPYTHON, "32-bit": os.path.join(mpy.ROOT, ".venv", "bin", "micropython32")}


@pytest.mark.parametrize("port", sorted(PORTS))
def test_a_wait_without_heap_is_undone_and_tried_again(port):
    if not os.path.exists(PORTS[port]):
        pytest.fail("%s is missing: make setup builds it" % PORTS[port])
    r = subprocess.run([PORTS[port], "-X", "heapsize=128K", "tests/unit/sched_unjam.py", str(free_port())],
                       env=dict(os.environ, MICROPYPATH=mpy.ROOT + "/lib:.frozen"), cwd=mpy.ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out == {"got": ["one", "starve", "two"], "unjammed": True, "internals": True}, out
