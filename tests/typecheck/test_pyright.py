"""pyright per board with that port's MicroPython stubs (tools/typecheck; docs/development.md, "Type checking"):
the firmware type-checks on every board, and a call a port does not have fails."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from tbtest import load_tool  # noqa: E402

typecheck = load_tool("typecheck")

BOARDS = ("ESP32_GENERIC", "RPI_PICO_W", "UNIX")
STUBS = {"ESP32_GENERIC": "esp32", "RPI_PICO_W": "rp2", "UNIX": "unix"}

# Calls that exist on one port and not on another: each must fail where it is missing.
PROBE = """\
import machine
import esp32
import rp2

esp32.mcu_temperature()
machine.WDT(timeout=8000).feed()
machine.ADC(4).read_u16()
"""


@pytest.fixture(scope="module")
def results():
    return typecheck.check(BOARDS)


@pytest.mark.parametrize("board", BOARDS)
def test_board_type_checks_with_its_stubs(results, board):
    assert typecheck.boards() == sorted(BOARDS)
    assert results[board] == [], "\n".join(results[board])


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    procs = {}
    for board, stubs in STUBS.items():
        d = tmp_path_factory.mktemp(board)
        (d / "probe.py").write_text(PROBE)
        cfg = json.load(open(os.path.join(ROOT, "boards", board, "pyrightconfig.json")))
        sp = os.path.join(ROOT, ".venv", "stubs", stubs)
        (d / "pyrightconfig.json").write_text(json.dumps({
            "include": ["probe.py"], "typeshedPath": sp, "stubPath": sp,
            **{k: v for k, v in cfg.items() if k.startswith("report") or k == "typeCheckingMode"}}))
        procs[board] = subprocess.Popen([typecheck.PYRIGHT, "--outputjson", "-p", str(d / "pyrightconfig.json")],
                                        stdout=subprocess.PIPE, text=True,
                                        env=dict(os.environ, PYRIGHT_PYTHON_IGNORE_WARNINGS="1"))
    out = {}
    for board, p in procs.items():
        report = json.loads(p.communicate()[0])
        out[board] = sorted((d["range"]["start"]["line"] + 1, d["message"].splitlines()[0])
                            for d in report["generalDiagnostics"] if d["severity"] == "error")
    return out


def lines(errors):
    return sorted({line for line, _ in errors})


def test_missing_calls_fail_on_the_port_that_lacks_them(probes):
    # ESP32_GENERIC (the original ESP32): no rp2 module, no mcu_temperature (S2/S3/C3 only).
    assert lines(probes["ESP32_GENERIC"]) == [3, 5], probes["ESP32_GENERIC"]
    # Pico W: no esp32 module (so nothing about its functions either).
    assert 2 in lines(probes["RPI_PICO_W"]) and 6 not in lines(probes["RPI_PICO_W"]), probes["RPI_PICO_W"]
    assert 7 not in lines(probes["RPI_PICO_W"])
    # the unix port: no esp32, no rp2, no machine.WDT or machine.ADC.
    assert {2, 3, 6, 7} <= set(lines(probes["UNIX"])), probes["UNIX"]
