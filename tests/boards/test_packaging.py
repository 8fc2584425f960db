"""Packaging: make build per board, the mip package.json files and the manifests (docs/boards.md)."""
import json
import os
import subprocess

import pytest

from tbtest import load_tool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOARD_TOOL = [os.path.join(ROOT, ".venv", "bin", "python"), os.path.join(ROOT, "tools", "board")]
BOARDS = ("ESP32_GENERIC", "RPI_PICO_W", "UNIX")


board = load_tool("board")
tracked = board.tracked
# What the board manifests require from micropython-lib (the build's $(MPY_LIB_DIR)).
MICROPYTHON_LIB = {"ntptime", "bundle-networking"}


class ManifestError(Exception):
    pass


class Manifest:
    """Runs a manifest.py the way MicroPython's tools/manifestfile.py does in freeze mode, recording
    what it would freeze ({target path: source path}): each file runs in its own directory;
    include() of a directory runs its manifest.py, once per build; require() finds <name>/manifest.py
    under the libraries add_library() registered and runs it with a metadata() of its own, while
    include() shares the includer's (a second metadata() there is the build's "Duplicate call to
    metadata()"); what the port's manifest and micropython-lib hold is only recorded."""

    def __init__(self):
        self.files = {}
        self.requires = []  # micropython-lib's packages
        self.includes = []  # the port's manifests
        self.libraries = {}
        self.metadata = {}  # manifest path -> its metadata() arguments
        self._visited = set()
        self._meta = [False]  # one level per require(): True once metadata() was called

    def run(self, path, is_require=False):
        if "$(PORT_DIR)" in path:
            self.includes.append(path)
            return
        path = os.path.abspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "manifest.py")
        if path in self._visited:
            return
        self._visited.add(path)
        if is_require:
            self._meta.append(False)
        cwd = os.getcwd()
        os.chdir(os.path.dirname(path))
        try:
            g = {"include": self.run, "require": self.require, "add_library": self.add_library,
                 "metadata": lambda **kw: self._metadata(path, kw), "package": self.package, "module": self.module}
            exec(open(path).read(), g)
        finally:
            os.chdir(cwd)
            if is_require:
                self._meta.pop()

    def _metadata(self, path, kw):
        if self._meta[-1]:
            raise ManifestError("%s: Duplicate call to metadata()" % path)
        self._meta[-1] = True
        self.metadata[path] = kw

    def add_library(self, name, path, prepend=False):
        self.libraries[name] = os.path.abspath(path)

    def require(self, name, library=None, **kw):
        libs = [self.libraries[library]] if library is not None else list(self.libraries.values())
        for lib in libs:
            for root, _, files in os.walk(lib):
                if os.path.basename(root) == name and "manifest.py" in files:
                    return self.run(root, is_require=True)
        if library is not None or name not in MICROPYTHON_LIB:
            raise ManifestError("require(%r): no %s/manifest.py in %s" % (name, name, libs))
        self.requires.append(name)

    def package(self, name, files=None, base_path=".", opt=None):
        base = os.path.abspath(base_path)
        if files is None:
            files = [os.path.relpath(os.path.join(dp, f), os.path.join(base, name))
                     for dp, _, fs in os.walk(os.path.join(base, name)) for f in fs if f.endswith(".py")]
        for f in files:
            self.files["%s/%s" % (name, f)] = os.path.join(base, name, f)

    def module(self, name, base_path=".", opt=None):
        self.files[name] = os.path.join(os.path.abspath(base_path), name)


def part_manifest(name):
    """What require(name) freezes, lib/ registered as a board manifest registers it."""
    m = Manifest()
    m.add_library(board.LIBRARY, os.path.join(ROOT, "lib"))
    m.require(name, library=board.LIBRARY)
    return m


def test_generated_files_are_current():
    # lib/<part>/manifest.py and the mip .json files come from tools/board's PARTS and git's files
    r = subprocess.run(BOARD_TOOL + ["packages", "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_module_is_in_one_part():
    where = board.check_parts()  # dies naming a module in two parts, or in none
    assert sorted(where) == sorted("%s/%s" % (p, m) for p in ("coap", "httpclient", "tbdevice") for m in tracked(p))


@pytest.mark.parametrize("part", list(board.PARTS))
def test_part_manifest_freezes_the_part_and_what_it_needs(part):
    m = part_manifest(part)
    assert sorted(m.files) == board.closure(part)
    assert all(os.path.exists(p) for p in m.files.values()), [p for p in m.files.values() if not os.path.exists(p)]
    assert m.metadata and all(md.get("version") == board.version() for md in m.metadata.values())
    assert not m.requires and not m.includes


@pytest.mark.parametrize("part", list(board.PARTS))
def test_part_json_lists_the_part_and_what_it_needs(part):
    path, _ = board.mip_json(part)
    with open(os.path.join(ROOT, "lib", path)) as f:
        pj = json.load(f)
    base = os.path.dirname(os.path.join(ROOT, "lib", path))
    pkg = board.PARTS[part][2]
    want = [f for f in board.closure(part) if part != pkg or f.startswith(pkg + "/")]
    assert sorted(dst for dst, _ in pj["urls"]) == want
    for dst, url in pj["urls"]:  # relative URLs without "..": mip fetches them below the .json's folder
        assert ":" not in url and ".." not in url and os.path.exists(os.path.join(base, url)), url
    assert "deps" not in pj  # a dependency is a micropython-lib name or an absolute URL (see tools/board)


def test_everything_json_and_the_existing_urls():
    # lib/package.json: every module; lib/coap/package.json and lib/tbdevice/package.json (the URLs
    # users had before the parts) still install all of their package
    with open(os.path.join(ROOT, "lib", "package.json")) as f:
        everything = sorted(dst for dst, _ in json.load(f)["urls"])
    assert everything == sorted("%s/%s" % (p, m) for p in ("coap", "httpclient", "tbdevice") for m in tracked(p))
    for pkg in ("coap", "tbdevice", "httpclient"):
        with open(os.path.join(ROOT, "lib", pkg, "package.json")) as f:
            got = sorted(dst for dst, _ in json.load(f)["urls"])
        assert got == ["%s/%s" % (pkg, m) for m in tracked(pkg)]


def frozen_by(board_name):
    m = Manifest()
    m.run(os.path.join(ROOT, "boards", board_name))
    return m


@pytest.mark.parametrize("board_name", BOARDS)
def test_board_manifest_freezes_what_the_device_runs(board_name):
    m = frozen_by(board_name)
    assert m.includes and "$(PORT_DIR)" in m.includes[0]  # the port's own frozen modules first
    assert all(os.path.exists(p) for p in m.files.values()), [p for p in m.files.values() if not os.path.exists(p)]
    # everything build/<BOARD> puts on the file system, except /main.py (boot runs it from there)
    out = subprocess.run(BOARD_TOOL + ["sources", board_name], capture_output=True, text=True, check=True).stdout
    device = {line.split(" -> /")[1] for line in out.splitlines()} - {"main.py"}
    frozen = {("lib/" + t if "/" in t else t) for t in m.files}
    assert frozen == device, (sorted(device - frozen), sorted(frozen - device))
    # ... which is every module of lib/, every firmware module but main.py, the HAL (and Wi-Fi's)
    fw = sorted(f for f in os.listdir(os.path.join(ROOT, "firmware")) if f.endswith(".py") and f != "main.py")
    lib = ["%s/%s" % (p, f) for p in ("coap", "httpclient", "tbdevice") for f in tracked(p)]
    hal = ["hal.py"] + (["wifihal.py"] if board_name != "UNIX" else [])
    assert sorted(m.files) == sorted(lib + fw + hal)
    assert m.files["hal.py"] == os.path.join(ROOT, "boards", board_name, "hal.py")
    if board_name != "UNIX":
        assert "ntptime" in m.requires or "bundle-networking" in m.requires


def test_board_manifests_share_one_file():
    # The lines every board repeated live in boards/common/manifest.py, which each board includes.
    common = os.path.join(ROOT, "boards", "common", "manifest.py")
    for b in BOARDS:
        m = frozen_by(b)
        assert common in m._visited, b


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


def test_the_library_is_compiled_without_line_numbers_and_the_app_with_them(tmp_path):
    """tools/board's mpy_cross_args: lib/ at -O3, as MicroPython compiles its own asyncio (2 KB less
    heap on a 32-bit board), so its tracebacks name file and function at "line 1"; firmware/ keeps
    its line numbers. A bundle's .mpy are the ones `make build` writes."""
    r = subprocess.run(["make", "-s", "build", "BOARD=UNIX"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    out = os.path.join(ROOT, "build", "UNIX")
    code = ("import sys\nsys.path.insert(0, 'lib')\n"
            "try:\n from coap import message\n message.decode(b'')\n"
            "except Exception as e:\n sys.print_exception(e)\n"
            "import forward\nforward.Forwarder(None, None)\n")
    r = subprocess.run([os.path.join(ROOT, ".venv", "bin", "micropython"), "-c", code], cwd=out,
                       capture_output=True, text=True)
    assert 'File "lib/coap/message.py", line 1, in decode' in r.stdout, r.stdout
    with open(os.path.join(ROOT, "firmware", "forward.py")) as f:
        line = [n for n, text in enumerate(f, 1) if 'cfg.get("queue")' in text][0]
    assert 'File "forward.py", line %d, in __init__' % line in r.stdout, r.stdout
    bundle = load_tool("bundle.py")
    files = [("lib/coap/message.py", open(os.path.join(ROOT, "lib", "coap", "message.py"), "rb").read()),
             ("firmware/forward.py", open(os.path.join(ROOT, "firmware", "forward.py"), "rb").read())]
    compiled = dict(bundle.compile_mpy(files, "UNIX")[0])
    for rel, dev in (("lib/coap/message.mpy", "lib/coap/message.mpy"), ("firmware/forward.mpy", "forward.mpy")):
        with open(os.path.join(out, dev), "rb") as f:
            assert compiled[rel] == f.read(), rel


def test_make_firmware_says_what_it_needs():
    r = subprocess.run(["make", "-s", "firmware", "BOARD=ESP32_GENERIC"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "MICROPYTHON=<a micropython checkout>" in r.stderr
    r = subprocess.run(["make", "-s", "build", "BOARD=NOPE"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "unknown BOARD" in r.stderr
