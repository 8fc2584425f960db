"""The virtual board (tools/virtual-board: the unix port behind a socat pty): `make deploy
BOARD=UNIX PORT=<pty> CONFIG=...` copies build/UNIX onto it with mpremote, and the deployed
firmware, started the way a board starts it (main.py), reaches tbsim."""
import json
import os
import signal
import subprocess
import threading

from tbtest import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPREMOTE = os.path.join(ROOT, ".venv", "bin", "mpremote")


def test_deploy_to_the_virtual_board_and_see_telemetry(tbsim, tmp_path):
    flash, tty = tmp_path / "flash", tmp_path / "tty"
    board = subprocess.Popen([os.path.join(ROOT, "tools", "virtual-board"), str(flash), str(tty)],
                             env=dict(os.environ, HEAP="256K"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    run = None
    try:
        assert wait_until(lambda: tty.exists(), timeout=10), board.stdout.read() if board.poll() is not None else ""
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps({"host": "127.0.0.1", "port": tbsim.coap_port, "token": tbsim.token,
                                   "telemetry_interval_ms": 300, "state_dir": "."}))
        r = subprocess.run(["make", "-s", "deploy", "BOARD=UNIX", "PORT=" + str(tty), "CONFIG=" + str(cfg)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        # the device's file system, as on a board
        for f in ("main.py", "config.json", "hal.mpy", "app.mpy", "lib/coap/client.mpy", "lib/tbdevice/device.mpy"):
            assert (flash / f).exists(), f
        assert json.loads((flash / "config.json").read_text())["port"] == tbsim.coap_port
        # boot: main.py runs with config.json from the file system
        run = subprocess.Popen([MPREMOTE, "connect", str(tty), "resume", "exec", "import main"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
        lines = []
        threading.Thread(target=lambda: [lines.append(x) for x in run.stdout], daemon=True).start()
        did = tbsim.rest.device_id(tbsim.device_name)

        def stored():
            got = tbsim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did,
                                 keys="temperature,current_fw_title")
            return got if len(got.get("temperature") or ()) and got.get("current_fw_title") else None

        got = wait_until(stored, timeout=20)
        assert got, "".join(lines)
        assert got["current_fw_title"][0]["value"] == "tb-micropython"
        # and the board's console (the pty, relayed by mpremote) shows the reports
        assert wait_until(lambda: any("-> 2.01" in x for x in lines), timeout=10), "".join(lines)
    finally:
        if run is not None:
            run.kill()
            run.wait()
        os.killpg(board.pid, signal.SIGTERM)  # socat and the unix port under it
        board.wait(timeout=10)
