"""tools/run-device stops the device on Ctrl-C, which a terminal sends to the whole foreground process
group: the device must get one SIGINT, not that one and run-device's forwarded one as well (a second
KeyboardInterrupt while it stops printed a traceback in about 1 stop in 8). SIGTERM to run-device alone (how
the tests and `make run` stop it) stops it the same way, and its exit status is the device's (0), not the 143
of the wait that the signal interrupted."""
import json
import os
import signal
import subprocess

import pytest

from tbtest import as_from_a_terminal, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("how", ["ctrl-c", "term"])
def test_a_stop_ends_the_device_once_and_cleanly(tmp_path, how):
    (tmp_path / "state").mkdir()
    cfg = tmp_path / "config.json"
    # nothing listens there: the device starts, says the link is down, and keeps trying
    cfg.write_text(json.dumps({"host": "127.0.0.1", "port": free_port(), "token": "T",
                               "telemetry_interval_ms": 1000, "state_dir": str(tmp_path / "state")}))
    for _ in range(12):
        p = subprocess.Popen([os.path.join(ROOT, "tools", "run-device"), str(cfg)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=as_from_a_terminal)
        out = b""
        while b"link down" not in out:
            chunk = p.stdout.read1(4096)
            assert chunk, out.decode()
            out += chunk
        if how == "ctrl-c":
            os.killpg(p.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the whole group
        else:
            p.terminate()
        out += p.communicate(timeout=30)[0]
        text = out.decode()
        assert p.returncode == 0 and "device: stopped" in text and "Traceback" not in text, text
