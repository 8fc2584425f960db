"""mip installs each part of lib/ (tools/board PARTS, docs/boards.md) from a local HTTP server serving
this checkout, as it would from GitHub: with MicroPython's own mip on the unix port (the code a board
runs: github: URLs, relative URLs, one branch for every file) and with mpremote's on the virtual board.
A fresh target directory per part then holds exactly the part's files, every import its modules make
finds its module there, and the unix port imports each of them. The needs are read from the imports
of the installed files, so that a module that starts importing another part's module fails here until
PARTS says so."""
import ast
import functools
import http.server
import os
import subprocess
import threading

import pytest

from test_packaging import ROOT, board
from test_virtual_board import virtual_board

MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
MPREMOTE = os.path.join(ROOT, ".venv", "bin", "mpremote")
PACKAGES = ("coap", "httpclient", "tbdevice")
# Each part's .json, and lib/package.json (everything)
JSONS = {name: board.mip_json(name)[0] for name in board.PARTS}
JSONS["everything"] = "package.json"
REPO = "github:owner/repo"
BRANCH = "v9"

# On the unix port: mip fetches https://raw.githubusercontent.com/owner/repo/<branch>/<path>; here
# that host is the local server, and each URL fetched is printed so the test sees the branches.
_MIP = """import sys, mip, requests
base, url, target, branch = sys.argv[1:5]
gh = "https://raw.githubusercontent.com/owner/repo/"
get = requests.get
def local(u, **kw):
    print("GET", u)
    if u.startswith(gh):
        u = base + u[len(gh):].split("/", 1)[1]
    return get(u, **kw)
requests.get = local
mip.install(url, target=target, version=branch)
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    """http://127.0.0.1:<port>/ serving the checkout, as raw.githubusercontent.com serves a branch."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=ROOT))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/" % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def expected(name):
    """The files the .json installs: a package's package.json those of its folder."""
    if name == "everything":
        return sorted("%s/%s" % (p, m) for p in PACKAGES for m in board.tracked(p))
    return [dst for dst, _ in board.mip_json(name)[1]["urls"]]


def with_packages(name):
    """The .json files to install for a part to work: its own, and for a package's package.json
    (which lists only its folder: lib/tbdevice/package.json) the package.json of every other
    package it needs, as docs/boards.md says."""
    if name not in PACKAGES:
        return [name]
    others = sorted({f.split("/")[0] for f in board.closure(name)} - {name})
    return others + [name]


def installed(target):
    return sorted(os.path.relpath(os.path.join(dp, f), target) for dp, _, fs in os.walk(target) for f in fs)


def imports(path, pkg):
    """Every module of lib/ the source imports, at its top or inside a function, as "pkg/mod.py"."""
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module if not node.level else pkg + ("." + node.module if node.module else "")
            names = [mod] + [mod + "." + a.name for a in node.names]  # `from pkg import module` too
        else:
            continue
        for n in names:
            parts = n.split(".")
            if parts[0] in PACKAGES and len(parts) > 1:
                f = "%s/%s.py" % tuple(parts[:2])
                if os.path.exists(os.path.join(ROOT, "lib", f)):
                    out.add(f)
    return out


def check_complete(target, files):
    """Every import of an installed module finds its file installed, but one that only the part
    holding it calls (tools/board CALLED_BY): that part brings it along."""
    missing = []
    for f in files:
        for need in imports(os.path.join(target, f), f.split("/")[0]):
            if need not in files and (f, need) not in board.CALLED_BY:
                missing.append("%s imports %s" % (f, need))
    assert not missing, "a part lacks what its modules import (tools/board PARTS): %s" % missing


def check_imports_on_the_port(target, files):
    mods = [f[:-3].replace("/", ".") for f in files if f.endswith(".py")]
    code = "import sys\nfor m in %r:\n    __import__(m)\nprint('imported', len(sys.modules))\n" % mods
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=1M", "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, MICROPYPATH=target + ":.frozen"), cwd=target)
    assert r.returncode == 0 and "imported" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("name", list(JSONS))
def test_mip_on_the_port_installs_a_part_that_works_alone(name, server, tmp_path):
    target = str(tmp_path / "lib")
    got = []
    for part in with_packages(name):
        url = "%s/lib/%s" % (REPO, JSONS[part])
        r = subprocess.run([MICROPYTHON, "-c", _MIP, server, url, target, BRANCH], capture_output=True, text=True,
                           timeout=120, cwd=str(tmp_path))
        assert r.returncode == 0 and "Done" in r.stdout, r.stdout + r.stderr
        got += [x.split()[1] for x in r.stdout.splitlines() if x.startswith("GET ")]
    files = installed(target)
    assert files == sorted(f for part in with_packages(name) for f in expected(part)), r.stdout
    # every file from the branch asked for: the .json's relative URLs keep it, as a dependency would not
    assert len(got) == len(files) + len(with_packages(name))
    assert all(u.startswith("https://raw.githubusercontent.com/owner/repo/%s/lib/" % BRANCH) for u in got), got
    check_complete(target, files)
    check_imports_on_the_port(target, files)


def test_mpremote_mip_installs_parts_on_the_virtual_board(server, tmp_path):
    # mpremote resolves the same relative URLs, writing through the board's raw REPL: a part from
    # lib/ (with what it needs) and a package's own package.json, each into a fresh directory.
    with virtual_board(tmp_path) as (flash, tty):
        args = [MPREMOTE, "connect", str(tty), "resume"]
        for name in ("tbdevice-ota", "httpclient"):
            args += ["mip", "install", "--target", "parts/" + name, server + "lib/" + JSONS[name], "+"]
        r = subprocess.run(args[:-1], capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        for name in ("tbdevice-ota", "httpclient"):
            target = str(flash / "parts" / name)
            files = installed(target)
            assert files == expected(name), r.stdout
            check_complete(target, files)
            check_imports_on_the_port(target, files)


def test_the_import_check_sees_a_missing_module(tmp_path):
    # What the checks above rely on: a part without a module one of its modules imports fails.
    files = [dst for dst, _ in board.mip_json("tbdevice-protobuf")[1]["urls"] if dst != "tbdevice/protobuf.py"]
    for f in files:
        os.makedirs(os.path.dirname(str(tmp_path / f)), exist_ok=True)
        with open(os.path.join(ROOT, "lib", f)) as src, open(str(tmp_path / f), "w") as dst:
            dst.write(src.read())
    with pytest.raises(AssertionError, match="tbdevice/protocodec.py imports tbdevice/protobuf.py"):
        check_complete(str(tmp_path), files)
    with pytest.raises(AssertionError, match="protobuf"):
        check_imports_on_the_port(str(tmp_path), files)


def test_every_json_is_documented():
    # docs/boards.md names each part's .json: they exist, and each part is in the table there.
    with open(os.path.join(ROOT, "docs", "boards.md")) as f:
        doc = f.read()
    for name, path in JSONS.items():
        assert os.path.exists(os.path.join(ROOT, "lib", path)), path
        assert "lib/" + path in doc, "docs/boards.md does not name lib/%s" % path
