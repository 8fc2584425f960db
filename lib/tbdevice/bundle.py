# Application bundles: the OTA package of file-system boards (unix port, Pico W, ESP32 on
# stock MicroPython), built by `make bundle VERSION=x.y.z` (tools/bundle.py) and unpacked
# here, streamed, into a slot directory (firmware/bootslot.py). Layout:
#   b"TBB1", manifest length (2 bytes, big-endian), manifest (JSON), then the files' bytes
#   in manifest order. manifest = {"title", "version", "board", "mpy", "files": [[path, size], ..]}
# "mpy" is what loading the bundle's .mpy files takes: {"version": 6} for bytecode, plus
# "sub_version" and "arch" (with its name, "march") when a module holds native code;
# check_mpy() compares it with the running MicroPython before anything is unpacked.
# The device reads the manifest a member and a file entry at a time (_Manifest). What it
# says but the file list is written into the slot last, as manifest.json: a slot without it
# is incomplete and never booted.
import json
import os
import sys

MAGIC = b"TBB1"


class BundleError(ValueError):
    pass


def pack(out, manifest, files):
    """Write a bundle to the binary stream out; files: [(path, bytes)] (host tool)."""
    manifest = dict(manifest)
    manifest["files"] = [[p, len(d)] for p, d in files]
    head = json.dumps(manifest).encode()
    out.write(MAGIC)
    out.write(bytes((len(head) >> 8, len(head) & 255)))
    out.write(head)
    for _, d in files:
        out.write(d)


def _safe(path):
    if not isinstance(path, str) or not path or path[0] == "/" or "\\" in path:
        return False
    for seg in path.split("/"):
        if seg in ("", ".", ".."):
            return False
    return True


def _makedirs(base, rel):
    d = base
    for seg in rel.split("/")[:-1]:
        d += "/" + seg
        try:
            os.mkdir(d)
        except OSError:
            pass


def _rmtree(path):
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for e in entries:
        p = path + "/" + e
        try:
            os.remove(p)
        except OSError:
            _rmtree(p)
    os.rmdir(path)


_LONGEST = 512  # bytes of JSON in one member of the manifest but "files", or in one file entry


class _Manifest:
    # The manifest (the n bytes after the header of the bundle f) read a byte at a time and cut
    # into the JSON texts of its members and of its file entries, each parsed alone: the file
    # list is never whole in the heap (the app's 69 paths were 6 KB of objects, the peak of an
    # update's boot: docs/memory.md). The bytes come through a one-byte buffer, so reading
    # them allocates nothing: garbage per byte would shred the heap the download needs.
    def __init__(self, f):
        if f.read(4) != MAGIC:
            raise BundleError("not a bundle (bad magic)")
        n = f.read(2)
        if len(n) != 2:
            raise BundleError("truncated bundle header")
        self.f = f
        self.n = (n[0] << 8) | n[1]
        self.one = bytearray(1)
        self.text = bytearray(_LONGEST)
        self.k = 0

    def _byte(self):
        if not self.n or self.f.readinto(self.one) != 1:
            raise BundleError("bad bundle manifest (truncated)")
        self.n -= 1
        return self.one[0]

    def _cut(self, stops):
        # Gather the text up to the first byte of `stops` outside strings and brackets; return
        # that byte.
        self.k = depth = 0
        quoted = escaped = False
        while True:
            c = self._byte()
            if quoted:
                if escaped:
                    escaped = False
                elif c == 92:  # backslash
                    escaped = True
                elif c == 34:  # "
                    quoted = False
            elif c == 34:  # double quote
                quoted = True
            elif not depth and c in stops:
                return c
            elif c in b"[{":
                depth += 1
            elif c in b"]}":
                depth -= 1
            if self.k == _LONGEST:
                raise BundleError("bad bundle manifest (a value longer than %d bytes)" % _LONGEST)
            self.text[self.k] = c
            self.k += 1

    def _value(self):
        try:
            return json.loads(self.text[: self.k])
        except ValueError:
            raise BundleError("bad bundle manifest")

    def _blank(self):
        return not self.text[: self.k].strip()

    def _expect(self, c):
        if self._cut(c) != c[0] or not self._blank():
            raise BundleError("bad bundle manifest")

    def head(self):
        """The manifest's members but "files", checking every file entry on the way."""
        self._expect(b"{")
        man = {}
        files = False
        while True:
            stop = self._cut(b":}")
            if stop == 125 and self._blank():  # } right after { (or after a comma)
                break
            key = self._value()
            if stop != 58 or not isinstance(key, str):  # 58: the key's ":"
                raise BundleError("bad bundle manifest")
            if key == "files":
                for _ in self.files():
                    pass
                files = True
                stop = self._cut(b",}")
                if not self._blank():
                    raise BundleError("bad bundle manifest")
            else:
                stop = self._cut(b",}")
                man[key] = self._value()
            if stop == 125:  # }
                break
        while self.n:  # whitespace to the end: then f stands at the first file's bytes
            if self._byte() not in b" \t\r\n":
                raise BundleError("bad bundle manifest (bytes after its end)")
        if not files:
            raise BundleError("bad bundle manifest (no files)")
        return man

    def files(self):
        """(path, size) of each file, in the bundle's order: the reader stands at the value of
        "files" (skip() brings it there)."""
        self._expect(b"[")
        while True:
            stop = self._cut(b",]")
            if stop == 93 and self._blank():  # ] right after [ (or after a comma)
                return
            entry = self._value()
            if not (isinstance(entry, list) and len(entry) == 2 and _safe(entry[0]) and isinstance(entry[1], int)
                    and entry[1] >= 0):
                raise BundleError("bad file entry in the bundle manifest: %r" % (entry,))
            yield entry[0], entry[1]
            if stop == 93:  # ]
                return

    def skip(self):
        """Read on to the value of "files"."""
        self._expect(b"{")
        while True:
            self._cut(b":")
            if self._value() == "files":
                return
            self._cut(b",")


def read_manifest(f):
    """The manifest of the bundle f (a binary stream at its start) but its file list, which
    is checked; f is left at the first file's bytes."""
    return _Manifest(f).head()


def check_mpy(man, have=None):
    """Raise BundleError when this MicroPython cannot load the bundle's .mpy files. `have` is
    sys.implementation._mpy: the .mpy version in bits 0-7, the sub-version in bits 8-9, the
    native architecture in bits 10 and up (0: no native code); a bundle without "mpy" holds
    sources."""
    need = man.get("mpy")
    if need is None:
        return
    if have is None:
        have = getattr(sys.implementation, "_mpy", None)
    if have is None:
        raise BundleError("the bundle holds .mpy v%s and this MicroPython does not say which .mpy it loads"
                          % need.get("version"))
    if need.get("version") != have & 0xFF:
        raise BundleError("the bundle holds .mpy v%s, this MicroPython loads v%d (build the bundle with the "
                          "mpy-cross of the device's MicroPython)" % (need.get("version"), have & 0xFF))
    arch = need.get("arch")
    if arch and (arch != have >> 10 or need.get("sub_version") != (have >> 8) & 3):
        raise BundleError("the bundle holds native code for %s (.mpy arch %d, v%s.%s), this MicroPython is arch %d, "
                          "v%d.%d" % (need.get("march"), arch, need.get("version"), need.get("sub_version"),
                                      have >> 10, have & 0xFF, (have >> 8) & 3))


def unpack(src, dest, buf=None, check=None):
    """Unpack the bundle file src into the directory dest (emptied first), `buf` bytes at a
    time; returns the manifest but its file list. check(manifest), when given, runs before
    dest is touched and may raise. Raises BundleError on a malformed bundle, OSError on I/O."""
    buf = buf or bytearray(512)
    mv = memoryview(buf)
    with open(src, "rb") as f:
        man = read_manifest(f)  # every entry checked before anything is written
        if check is not None:
            check(man)
        _rmtree(dest)
        os.mkdir(dest)
        with open(src, "rb") as g:  # the entries again, beside the files' bytes in f
            entries = _Manifest(g)
            entries.skip()
            for path, size in entries.files():
                _makedirs(dest, path)
                with open(dest + "/" + path, "wb") as out:
                    left = size
                    while left:
                        n = f.readinto(mv[: min(left, len(buf))])
                        if not n:
                            raise BundleError("bundle truncated in %s" % path)
                        out.write(mv[:n])
                        left -= n
        if f.read(1):
            raise BundleError("trailing bytes after the last file")
    with open(dest + "/manifest.json", "w") as f:
        json.dump(man, f)
    return man
