"""docs/boards.md gives the build's size as what `make build` prints, not a figure typed once that the
code outgrows (issue 15 item 12): the line it quotes is the line the build prints."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme():
    with open(os.path.join(ROOT, "docs", "boards.md"), encoding="utf-8") as f:
        return f.read()


def test_the_readme_quotes_the_line_make_build_prints():
    text = readme()
    m = re.search(r"The size of `build/<BOARD>` is what `make build` prints[^`]*`([^`]+)`", text)
    assert m, "docs/boards.md: no pointer to what make build prints"
    pattern = re.escape(m.group(1))
    for placeholder, rx in (("<BOARD>", r"(?P<board>\w+)"), ("<N>", r"(?P<n>\d+)"), ("<BYTES>", r"(?P<bytes>\d+)"),
                            ("<ARCH>", r"\w+")):
        pattern = pattern.replace(re.escape(placeholder), rx)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "board"), "build", "UNIX"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = re.fullmatch(pattern, r.stdout.strip())
    assert got and got["board"] == "UNIX", (pattern, r.stdout)
    # and the figure is the build's own: the files and bytes under build/UNIX
    out = os.path.join(ROOT, "build", "UNIX")
    files = [os.path.join(dp, f) for dp, _, fs in os.walk(out) for f in fs]
    assert int(got["n"]) == len(files) and int(got["bytes"]) == sum(os.path.getsize(f) for f in files)


def test_no_build_size_is_typed_into_the_readme():
    text = readme()
    assert not re.search(r"about \d+ KB of `\.mpy` in \d+ files", text)
    assert "(86 KB today)" not in text
