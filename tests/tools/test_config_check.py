"""Issue 15 item 4: a config is checked strictly on the host wherever it enters (tools/run-device for
`make device` and `make run`, tools/board for `make deploy`), with file, line and column; the
device's own validation (firmware/config.py) runs there too; a state_dir that does not exist is
refused, on the host and by the device itself."""
import json
import os
import signal
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = os.path.join(ROOT, ".venv", "bin", "python")
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")

# What MicroPython's json takes without a word (read as {"host": "port"}, or with the comma ignored).
LENIENT = [
    ('{"host": , "port": 1, "token": "t"}', 1, 10, "a key without a value"),
    ('{"host": "127.0.0.1",\n "token": "t",\n}\n', 3, 1, "no trailing comma"),
    ('{"host": "127.0.0.1"\n "token": "t"}', 2, 2, "a comma missing"),
]


def start(cmd, **kw):
    """Run cmd until it ends, or until the device announces itself (it took the config): then stop it."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                         start_new_session=True, **kw)
    out = []
    for line in p.stdout:
        out.append(line)
        if line.startswith("device: "):  # "device: CoAP 127.0.0.1:..., reporting every ..."
            os.killpg(p.pid, signal.SIGKILL)  # run-device and the unix port under it
            break
    p.wait(timeout=30)
    return p.returncode, "".join(out)


def write(tmp_path, text, name="config.json"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text,line,col,hint", LENIENT)
def test_run_device_refuses_what_micropython_json_would_take(tmp_path, text, line, col, hint):
    path = write(tmp_path, text)
    rc, out = start([os.path.join(ROOT, "tools", "run-device"), path])
    assert rc == 2, out
    assert out.startswith("%s:%d:%d: not valid JSON" % (path, line, col)), out
    assert hint in out and "device: " not in out and "Traceback" not in out, out
    # the caret points at the column
    lines = out.splitlines()
    assert lines[2].index("^") - 2 == col - 1, out


def test_deploy_refuses_a_bad_config_before_touching_the_board(tmp_path):
    for text, line, col, _ in LENIENT:
        path = write(tmp_path, text)
        r = subprocess.run([PY, os.path.join(ROOT, "tools", "board"), "deploy", "UNIX", str(tmp_path / "no-port"),
                            path], capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.startswith("board: CONFIG %s:%d:%d: not valid JSON" % (path, line, col)), r.stderr
    # the device's own validation runs on the host too
    path = write(tmp_path, json.dumps({"host": "h", "token": "t", "port": "80"}))
    r = subprocess.run([PY, os.path.join(ROOT, "tools", "board"), "deploy", "UNIX", str(tmp_path / "no-port"), path],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 2 and "'port' must be an integer" in r.stderr, r.stderr


def test_the_device_checks_on_the_host_name_the_file(tmp_path):
    import checkconfig

    path = write(tmp_path, json.dumps({"host": "h", "token": "t", "telemetry_interval_ms": 5}))
    with pytest.raises(checkconfig.Problem) as e:
        checkconfig.check(path)
    assert str(e.value) == "%s: 'telemetry_interval_ms' must be an integer >= 100" % path
    # a board's paths are the board's: state_dir "/" is not looked for here
    cfg = checkconfig.check(os.path.join(ROOT, "firmware", "config.example.json"), board=True)
    assert cfg["state_dir"] == "/" and cfg["port"] == 5684


def test_a_state_dir_that_does_not_exist_is_refused(tmp_path):
    missing = str(tmp_path / "state")
    path = write(tmp_path, json.dumps({"host": "127.0.0.1", "port": 9, "token": "t", "state_dir": missing}))
    rc, out = start([os.path.join(ROOT, "tools", "run-device"), path])
    assert rc == 2 and out == "%s: 'state_dir' %s is not a directory that exists (create it first)\n" % (
        path, missing), out
    # the device itself refuses it too (a board, or the unix port run without tools/run-device)
    env = dict(os.environ, MICROPYPATH=":".join(os.path.join(ROOT, d) for d in ("lib", "firmware", "boards/UNIX"))
               + ":.frozen")
    rc, out = start([MICROPYTHON, "-X", "heapsize=384K", os.path.join(ROOT, "firmware", "main.py"), path], env=env)
    assert rc == 2 and out == "config: 'state_dir' %s is not a directory that exists (create it first)\n" % missing, out
    os.mkdir(missing)
    rc, out = start([os.path.join(ROOT, "tools", "run-device"), path])
    assert out.startswith("device: CoAP 127.0.0.1:9"), out
