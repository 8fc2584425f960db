# Where an OTA download goes on a board with a file system. A sink is written sequentially
# from an offset (a resumed download continues where the last durable byte is), read back
# to recompute the checksum after a reboot, then applied:
#   FileSink: the package kept as state_dir/ota/<kind>.bin (software packages, data)
#   SlotSink: an application bundle unpacked into the free slot and booted on trial
#             (firmware/bootslot.py), confirmed after the health check
# The ESP32 partition sink is tbdevice.otapart; board_sinks() says which a board uses.
# Interface (all sinks):
#   open(pkg, offset) -> offset, write(buf), durable(), replay(n, fn), close(),
#   apply(pkg) -> None or what was applied where (logged), needs_reboot, confirm(), discard()
import json
import os

from tbdevice.otastate import OtaError, unload

_ENOSPC = 28


def _mkdir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def free_bytes(path):
    try:
        st = os.statvfs(path)
        return st[0] * st[4]  # f_bsize * f_bavail
    except (OSError, AttributeError):
        return None


class FileSink:
    needs_reboot = False
    room_factor = 1  # free space needed, in image sizes

    def __init__(self, state_dir, kind, buf=None):
        self.state_dir = state_dir
        self.kind = kind
        self.dir = state_dir + "/ota"
        self.part = self.dir + "/" + kind + ".part"
        self.buf = buf
        self.f = None
        self.written = 0

    def open(self, pkg, offset):
        _mkdir(self.dir)
        size = pkg.get("size")
        have = _size(self.part)
        if offset > have:
            offset = 0  # the partial file is gone: start over
        if offset == 0 and size:
            free = free_bytes(self.dir)
            if have > 0:
                free = None if free is None else free + have
            if free is not None and free < size * self.room_factor:
                raise OSError(_ENOSPC, "%d bytes free, %d needed" % (free, size * self.room_factor))
        if offset:
            self.f = open(self.part, "r+b")
            self.f.seek(offset)
        else:
            self.f = open(self.part, "wb")
        self.written = offset
        return offset

    def write(self, data):
        self.f.write(data)
        self.written += len(data)

    def durable(self):
        """Bytes on flash for sure (flushed): what the record may say was written."""
        self.f.flush()
        return self.written

    def replay(self, n, fn):
        """fn(memoryview) over bytes [0, n) of what was written before (checksum on resume)."""
        buf = self.buf or bytearray(512)
        mv = memoryview(buf)
        with open(self.part, "rb") as f:
            while n > 0:
                k = f.readinto(mv[: min(n, len(buf))])
                if not k:
                    raise OSError(5, "short read")
                fn(mv[:k])
                n -= k

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None

    def discard(self):
        self.close()
        _remove(self.part)

    def apply(self, pkg):
        final = self.dir + "/" + self.kind + ".bin"
        _remove(final)
        os.rename(self.part, final)
        with open(self.dir + "/" + self.kind + "-installed.json", "w") as f:
            f.write(json.dumps({"title": pkg["title"], "version": pkg["version"]}))

    def installed(self):
        """(title, version) of the package last applied here, or None."""
        try:
            with open(self.dir + "/" + self.kind + "-installed.json") as f:
                d = json.load(f)
            return d["title"], d["version"]
        except (OSError, ValueError, KeyError):
            return None

    def confirm(self):
        pass


class SlotSink(FileSink):
    """An application bundle (tbdevice.bundle) unpacked into the free slot; `slots` is the
    boot shim (firmware/bootslot.py): its module, or its name, imported only to apply and to
    confirm (firmware/main.py lets it go after the boot). The bundle's manifest is checked as
    soon as it has arrived (its .mpy must load here, its title and version must be the
    package's), so a bundle this device cannot take fails early and never reaches a slot."""

    needs_reboot = True
    room_factor = 2  # the download, then its unpacked copy

    def __init__(self, state_dir, kind, slots="bootslot", buf=None):
        FileSink.__init__(self, state_dir, kind, buf)
        self.slots = slots
        self.pkg = None
        self.head = 0  # bytes needed before the manifest can be checked; 0 once it was

    def open(self, pkg, offset):
        self.pkg = pkg
        self.head = 6  # magic and manifest length (tbdevice.bundle)
        offset = FileSink.open(self, pkg, offset)
        if offset >= self.head:  # resumed past the header: check what is on flash
            self._check_head()
        return offset

    def write(self, data):
        FileSink.write(self, data)
        if self.head and self.written >= self.head:
            self._check_head()

    def _check_head(self):
        # Read back from flash rather than held in RAM: the manifest lists every file. Once
        # it passed, the bundle code leaves the heap until apply(): the download goes on.
        from tbdevice import bundle

        self.f.flush()
        with open(self.part, "rb") as f:
            h = f.read(6)
            if h[:4] != bundle.MAGIC:
                raise OtaError("not an application bundle (it does not start with %s)" % bundle.MAGIC.decode())
            need = 6 + (h[4] << 8 | h[5])
            if self.written < need:
                self.head = need
                return
            f.seek(0)
            try:
                man = bundle.read_manifest(f)
            except bundle.BundleError as e:
                raise OtaError("bad bundle: %s" % e)
        self.head = 0
        self._check(man)
        unload("bundle")

    def _check(self, man):
        from tbdevice import bundle

        try:
            bundle.check_mpy(man)
        except bundle.BundleError as e:
            raise OtaError("this device cannot load the bundle: %s" % e)
        pkg = self.pkg
        if man.get("title") != pkg["title"] or man.get("version") != pkg["version"]:
            raise OtaError("the bundle is %s %s, the package says %s %s" % (
                man.get("title"), man.get("version"), pkg["title"], pkg["version"]))

    def shim(self):
        """The boot shim's module (`slots`, imported now when given by name)."""
        s = self.slots
        return __import__(s) if isinstance(s, str) else s

    def apply(self, pkg):
        from tbdevice import bundle

        sd = self.state_dir
        self.pkg = pkg
        slots = self.shim()
        _mkdir(sd + "/slots")
        slot = slots.free_slot(sd)
        try:
            man = bundle.unpack(self.part, slots.slot_dir(sd, slot), self.buf, self._check)
        except bundle.BundleError as e:
            raise OtaError("bad bundle: %s" % e)
        slots.switch(sd, slot)  # atomic: the next boot runs the new slot, on trial
        _remove(self.part)
        return "an application bundle (.mpy v%s) in slot %s" % ((man.get("mpy") or {}).get("version", "-"), slot)

    def confirm(self):
        self.shim().confirm(self.state_dir)


def board_sinks(hal, state_dir):
    """{kind: function making its sink}: the board's own (hal.ota_sinks()) or the default,
    what file-system boards need:
      unix port, Pico W: fw = an application bundle in a slot (firmware/bootslot.py)
      ESP32:             fw = by the package's first bytes, an application bundle in a slot
                         (stock MicroPython) or a MicroPython image in the next OTA app
                         partition (tbdevice.otapart: a custom build with the app frozen)
      every board:       sw = a data package kept as state_dir/ota/sw.bin"""
    if hasattr(hal, "ota_sinks"):
        return hal.ota_sinks()
    try:
        import esp32  # feature detection (DESIGN §4.7)
    except ImportError:
        esp32 = None

    def fw():
        slot = SlotSink(state_dir, "fw")  # the boot shim, bootslot.py, is imported to apply
        if esp32 is None:
            return slot
        from tbdevice.otapart import Esp32Sink, PartitionSink

        return Esp32Sink(slot, PartitionSink(esp32))

    return {"fw": fw, "sw": lambda: FileSink(state_dir, "sw")}
