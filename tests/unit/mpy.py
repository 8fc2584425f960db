# Helpers for host tests that run code on the MicroPython unix port.
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
PATH = ":".join(os.path.join(ROOT, p) for p in ("lib", "firmware", "boards/UNIX", "tests/unit")) + ":.frozen"


def run(args, heap="64K", timeout=60, env=None, **kw):
    """Run the unix port with the project's modules on MICROPYPATH; returns CompletedProcess."""
    e = dict(os.environ, MICROPYPATH=PATH)
    if env:
        e.update(env)
    cmd = [MICROPYTHON] + (["-X", "heapsize=" + heap] if heap else []) + list(args)
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)
