"""Packaging: make build per board, the mip package.json files and the manifests (docs/boards.md)."""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOARD_TOOL = [os.path.join(ROOT, ".venv", "bin", "python"), os.path.join(ROOT, "tools", "board")]
BOARDS = ("ESP32_GENERIC", "RPI_PICO_W", "UNIX")


def tracked(pkg):
    r = subprocess.run(["git", "ls-files", "--", "."], cwd=os.path.join(ROOT, "lib", pkg), capture_output=True,
                       text=True)
    if r.returncode:  # not a git checkout: the files on disk
        names = os.listdir(os.path.join(ROOT, "lib", pkg))
    else:
        names = [n for n in r.stdout.split() if "/" not in n]
    return sorted(n for n in names if n.endswith(".py") and n != "manifest.py")


class Manifest:
    """Runs a manifest.py the way MicroPython's tools/manifestfile.py does (in its own directory,
    paths relative to it), recording what it would freeze: {target path: source path}."""

    def __init__(self, port_dir="/nonexistent/port"):
        self.files = {}
        self.requires = []
        self.includes = []
        self.metadata = {}
        self.port_dir = port_dir

    def run(self, path):
        path = os.path.abspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "manifest.py")
        if "$(PORT_DIR)" in path:
            self.includes.append(path)
            return
        cwd = os.getcwd()
        os.chdir(os.path.dirname(path))
        try:
            g = {"metadata": lambda **kw: self.metadata.setdefault(path, kw), "include": self.run,
                 "require": lambda name, **kw: self.requires.append(name), "package": self.package,
                 "module": self.module}
            exec(open(path).read(), g)
        finally:
            os.chdir(cwd)

    def package(self, name, files=None, base_path=".", opt=None):
        base = os.path.abspath(base_path)
        if files is None:
            files = [os.path.relpath(os.path.join(dp, f), os.path.join(base, name))
                     for dp, _, fs in os.walk(os.path.join(base, name)) for f in fs if f.endswith(".py")]
        for f in files:
            self.files["%s/%s" % (name, f)] = os.path.join(base, name, f)

    def module(self, name, base_path=".", opt=None):
        self.files[name] = os.path.join(os.path.abspath(base_path), name)


@pytest.mark.parametrize("pkg", ["coap", "tbdevice"])
def test_mip_package_json_and_manifest_list_every_module(pkg):
    mods = tracked(pkg)
    assert "__init__.py" in mods
    hint = "refresh with: .venv/bin/python tools/board packages"
    with open(os.path.join(ROOT, "lib", pkg, "package.json")) as f:
        pj = json.load(f)
    assert sorted(dst for dst, _ in pj["urls"]) == ["%s/%s" % (pkg, m) for m in mods], hint
    for dst, url in pj["urls"]:  # relative URLs: mip fetches them beside package.json
        assert url == dst.split("/", 1)[1] and os.path.exists(os.path.join(ROOT, "lib", pkg, url))
    m = Manifest()
    m.run(os.path.join(ROOT, "lib", pkg))
    own = sorted(t for t in m.files if t.startswith(pkg + "/"))
    assert own == ["%s/%s" % (pkg, x) for x in mods], hint
    assert all(os.path.exists(p) for p in m.files.values())
    assert m.metadata and all("version" in md for md in m.metadata.values())


@pytest.mark.parametrize("board", ["ESP32_GENERIC", "RPI_PICO_W", "UNIX"])
def test_board_manifest_freezes_what_the_device_runs(board):
    m = Manifest()
    m.run(os.path.join(ROOT, "boards", board))
    assert m.includes and "$(PORT_DIR)" in m.includes[0]  # the port's own frozen modules first
    assert all(os.path.exists(p) for p in m.files.values()), [p for p in m.files.values() if not os.path.exists(p)]
    # everything build/<BOARD> puts on the file system, except /main.py (boot runs it from there)
    out = subprocess.run(BOARD_TOOL + ["sources", board], capture_output=True, text=True, check=True).stdout
    device = {line.split(" -> /")[1] for line in out.splitlines()} - {"main.py"}
    frozen = {("lib/" + t if "/" in t else t) for t in m.files}
    assert device - frozen == set(), "not frozen: %s" % sorted(device - frozen)
    if board != "UNIX":
        assert "ntptime" in m.requires or "bundle-networking" in m.requires


def _mpy_header(path):
    with open(path, "rb") as f:
        return f.read(4)


@pytest.mark.parametrize("board", BOARDS)
def test_make_build_compiles_every_module_into_the_device_layout(board):
    r = subprocess.run(["make", "-s", "build", "BOARD=" + board], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    out = os.path.join(ROOT, "build", board)
    files = sorted(os.path.relpath(os.path.join(dp, f), out) for dp, _, fs in os.walk(out) for f in fs)
    assert "main.py" in files and "hal.mpy" in files and "app.mpy" in files and "config.mpy" in files
    for pkg in ("coap", "tbdevice"):
        for mod in tracked(pkg):
            assert "lib/%s/%s.mpy" % (pkg, mod[:-3]) in files
    assert not [f for f in files if f.endswith(".py") and f != "main.py"]
    if board != "UNIX":
        assert "wifihal.mpy" in files
    for f in files:
        if f.endswith(".mpy"):
            h = _mpy_header(os.path.join(out, f))
            assert h[0:2] == b"M\x06", (f, h)  # mpy v6: MicroPython 1.23 and later
    with open(os.path.join(out, "hal.mpy"), "rb") as f:
        assert board.encode() in f.read()  # this board's hal, not another's


def test_make_firmware_says_what_it_needs():
    r = subprocess.run(["make", "-s", "firmware", "BOARD=ESP32_GENERIC"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "MICROPYTHON=<a micropython checkout>" in r.stderr
    r = subprocess.run(["make", "-s", "build", "BOARD=NOPE"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "unknown BOARD" in r.stderr
