# Application bundles: the OTA package of file-system boards (unix port, Pico W, ESP32 on
# stock MicroPython), built by `make bundle VERSION=x.y.z` (tools/bundle.py) and unpacked
# here, streamed, into a slot directory (firmware/bootslot.py). Layout:
#   b"TBB1", manifest length (2 bytes, big-endian), manifest (JSON), then the files' bytes
#   in manifest order. manifest = {"title", "version", "board", "mpy", "files": [[path, size], ..]}
# "mpy" is what loading the bundle's .mpy files takes: {"version": 6} for bytecode, plus
# "sub_version" and "arch" (with its name, "march") when a module holds native code;
# check_mpy() compares it with the running MicroPython before anything is unpacked.
# The manifest is written into the slot last, as manifest.json: a slot without it is
# incomplete and never booted.
import io
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


class _Part(io.IOBase):
    # The next n bytes of a file as a stream of their own: json.load() parses the manifest
    # from flash as it reads, where json.loads() would need it whole in one block of heap
    # (2 KB for the app's 57 files), which a fragmented heap mid-download may not have.
    # MicroPython's json.load reads one byte per call: readinto allocates nothing then, or
    # the garbage of each byte would lie between the manifest's objects and shred the free
    # heap that the download needs in blocks of a KB (docs/memory.md).
    def __init__(self, f, n):
        self.f = f
        self.n = n

    def readinto(self, buf):
        if not self.n:
            return 0
        k = self.f.readinto(buf if len(buf) <= self.n else memoryview(buf)[: self.n])
        self.n -= k
        return k

    def read(self):  # what CPython's json.load calls (tools/bundle.py --install, on the host)
        b = self.f.read(self.n)
        self.n -= len(b)
        return b


def read_manifest(f):
    if f.read(4) != MAGIC:
        raise BundleError("not a bundle (bad magic)")
    n = f.read(2)
    if len(n) != 2:
        raise BundleError("truncated bundle header")
    try:
        man = json.load(_Part(f, (n[0] << 8) | n[1]))
        files = man["files"]
    except (ValueError, KeyError, TypeError):
        raise BundleError("bad bundle manifest")
    for entry in files:
        if not (isinstance(entry, list) and len(entry) == 2 and _safe(entry[0]) and isinstance(entry[1], int)):
            raise BundleError("bad file entry in the bundle manifest: %r" % (entry,))
    return man


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
    time; returns the manifest. check(manifest), when given, runs before dest is touched and
    may raise. Raises BundleError on a malformed bundle, OSError on I/O."""
    buf = buf or bytearray(512)
    mv = memoryview(buf)
    with open(src, "rb") as f:
        man = read_manifest(f)
        if check is not None:
            check(man)
        _rmtree(dest)
        os.mkdir(dest)
        for path, size in man["files"]:
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
        json.dump(man, f)  # written as it is encoded: no 2 KB string
    return man
