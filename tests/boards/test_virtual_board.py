"""The virtual board (tools/virtual-board: the unix port behind a socat pty): `make deploy
BOARD=UNIX PORT=<pty> CONFIG=...` copies build/UNIX onto it with mpremote, and the deployed
firmware, started the way a board starts it (main.py), reaches tbsim."""
import contextlib
import json
import os
import signal
import subprocess
import threading

from tbtest import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPREMOTE = os.path.join(ROOT, ".venv", "bin", "mpremote")


@contextlib.contextmanager
def virtual_board(tmp_path):
    flash, tty = tmp_path / "flash", tmp_path / "tty"
    board = subprocess.Popen([os.path.join(ROOT, "tools", "virtual-board"), str(flash), str(tty)],
                             env=dict(os.environ, HEAP="256K"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    try:
        assert wait_until(lambda: tty.exists(), timeout=30), board.stdout.read() if board.poll() is not None else ""
        yield flash, tty
    finally:
        os.killpg(board.pid, signal.SIGTERM)  # socat and the unix port under it
        board.wait(timeout=10)


def write_config(tmp_path, tbsim):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"host": "127.0.0.1", "port": tbsim.coap_port, "token": tbsim.token,
                               "telemetry_interval_ms": 300, "state_dir": "."}))
    return cfg


def deploy(tty, cfg):
    return subprocess.run(["make", "-s", "deploy", "BOARD=UNIX", "PORT=" + str(tty), "CONFIG=" + str(cfg)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def boot(tty):
    """main.py run the way the README says; yields the console lines mpremote relays."""
    run = subprocess.Popen([MPREMOTE, "connect", str(tty), "resume", "exec", "import main"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines = []
    threading.Thread(target=lambda: [lines.append(x) for x in run.stdout], daemon=True).start()
    try:
        yield lines
    finally:
        run.kill()  # mpremote interrupted: the firmware goes on running on the board
        run.wait()


def test_deploy_to_the_virtual_board_and_see_telemetry(tbsim, tmp_path):
    with virtual_board(tmp_path) as (flash, tty):
        cfg = write_config(tmp_path, tbsim)
        r = deploy(tty, cfg)
        assert r.returncode == 0, r.stdout + r.stderr
        # the device's file system, as on a board
        for f in ("main.py", "config.json", "hal.mpy", "app.mpy", "lib/coap/client.mpy", "lib/tbdevice/device.mpy"):
            assert (flash / f).exists(), f
        assert json.loads((flash / "config.json").read_text())["port"] == tbsim.coap_port
        # boot: main.py runs with config.json from the file system
        with boot(tty) as lines:
            did = tbsim.rest.device_id(tbsim.device_name)

            def stored():
                got = tbsim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did,
                                     keys="temperature,current_fw_title")
                return got if len(got.get("temperature") or ()) and got.get("current_fw_title") else None

            got = wait_until(stored, timeout=60)
            assert got, "".join(lines)
            assert got["current_fw_title"][0]["value"] == "tb-micropython"
            # and the board's console (the pty, relayed by mpremote) shows the reports
            assert wait_until(lambda: any("-> 2.01" in x for x in lines), timeout=30), "".join(lines)


def test_deploy_takes_the_board_back_from_the_running_firmware(tbsim, tmp_path):
    # Issue 15: once `mpremote ... exec "import main"` was interrupted the firmware kept the unix
    # port busy, and `make deploy` failed with "could not enter raw repl" until the virtual board
    # was restarted. It must stop the program (as Ctrl-C does on a board) and deploy.
    with virtual_board(tmp_path) as (flash, tty):
        cfg = write_config(tmp_path, tbsim)
        r = deploy(tty, cfg)
        assert r.returncode == 0, r.stdout + r.stderr
        with boot(tty) as lines:
            assert wait_until(lambda: any("-> 2.01" in x for x in lines), timeout=60), "".join(lines)
        r = deploy(tty, cfg)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "deployed build/UNIX" in r.stdout
        # the deployed firmware boots again: its modules were forgotten, as after a board's reset
        with boot(tty) as lines:
            assert wait_until(lambda: any("-> 2.01" in x for x in lines), timeout=60), "".join(lines)
            assert any(x.startswith("device: CoAP 127.0.0.1:%d" % tbsim.coap_port) for x in lines), "".join(lines)
