#!/usr/bin/env python3
"""A device's config.json checked on the host before it reaches the device (tools/run-device for
`make device` and `make run`, tools/board for `make deploy`).

MicroPython's `json` is lenient: it reads {"host": , "port": 1} as {"host": "port"} and takes
trailing and missing commas, so a typo there turns into a confusing error, or none, on the device.
Here the file is parsed strictly (CPython's json) and a syntax error is reported with its file, line
and column; then firmware/config.py, the device's own validation, runs on it.

    tools/checkconfig.py CONFIG.json             paths are this machine's (the unix port runs here)
    tools/checkconfig.py --board CONFIG.json     paths are a board's: state_dir is checked there, at boot

Exit status 0 when the config is good, 2 with one problem on stderr otherwise.
"""
import importlib.util
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Problem(ValueError):
    pass


def _firmware_config():
    # firmware/config.py as the device runs it (plain MicroPython that CPython runs as well), under
    # a name of its own so that nothing else called `config` is shadowed or taken.
    spec = importlib.util.spec_from_file_location("tb_firmware_config", os.path.join(ROOT, "firmware", "config.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _hint(text, pos, msg):
    before = text[:pos].rstrip()
    here = text[pos:pos + 1]
    if before.endswith(",") and here in "}]":
        return "a comma before '%s': JSON allows no trailing comma" % here
    if msg.startswith("Expecting ',' delimiter"):
        return "a comma missing before this"
    if msg == "Expecting value" and before.endswith(":") and here and here in ",}":
        return "a key without a value"
    return None


def _syntax(path, text, e):
    hint = _hint(text, e.pos, e.msg)
    line = text.splitlines()[e.lineno - 1]
    col = e.colno - 1
    start = max(0, col - 50)  # a one-line config can be long: show the part around the column
    shown = ("..." if start else "") + line[start:col + 30] + ("..." if len(line) > col + 30 else "")
    pad = "".join(c if c == "\t" else " " for c in shown[:col - start + (3 if start else 0)])
    return "%s:%d:%d: not valid JSON: %s%s\n  %s\n  %s^" % (
        path, e.lineno, e.colno, e.msg, " (%s)" % hint if hint else "", shown, pad)


def check(path, board=False):
    """The config at `path`, validated (defaults filled in); raises Problem with the message."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise Problem("%s: cannot read it (%s)" % (path, e.strerror or e))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Problem("%s: not UTF-8 text (byte %d)" % (path, e.start))
    if not text.strip():
        raise Problem("%s: the file is empty" % path)
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise Problem(_syntax(path, text, e))
    config = _firmware_config()
    try:
        config.validate(cfg)
        if not board:
            config.check_state_dir(cfg)
    except config.ConfigError as e:
        msg = str(e)
        raise Problem("%s: %s" % (path, msg[len("config: "):] if msg.startswith("config: ") else msg))
    return cfg


def main(argv):
    args = argv[1:]
    board = "--board" in args
    args = [a for a in args if a != "--board"]
    if len(args) != 1 or args[0].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        check(args[0], board)
    except Problem as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
