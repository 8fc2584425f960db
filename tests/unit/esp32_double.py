# An in-memory stand-in for MicroPython's esp32 module, limited to the documented
# esp32.Partition API (docs/library/esp32.rst "Flash partitions"; os.AbstractBlockDev for
# the block protocol), with NOR-flash semantics: an erase sets a block to 0xFF, a write can
# only clear bits, so writing a block that was not erased corrupts it, as on the chip.
# make(ota=True) -> an object with .Partition, like `import esp32`.

_ESP_ERR_NOT_FOUND = 2  # ENOENT: get_next_update() with no OTA partition


class Flash:
    def __init__(self, ota=True, app_size=4 * 4096):
        # (label, type, subtype): factory app, then ota_0/ota_1 when the table has OTA slots
        self.table = [("nvs", 1, 0x02), ("factory", 0, 0x00)]
        if ota:
            self.table += [("ota_0", 0, 0x10), ("ota_1", 0, 0x11)]
        self.data = {label: bytearray(b"\xff" * (4096 if t else app_size)) for label, t, _ in self.table}
        self.running = "factory"
        self.boot = "factory"
        self.valid_marks = 0
        self.erases = 0


def make(ota=True, app_size=4 * 4096, image_check=None):
    flash = Flash(ota, app_size)

    class Partition:
        BOOT = 0
        RUNNING = 1
        TYPE_APP = 0
        TYPE_DATA = 1

        def __init__(self, id, block_size=4096):
            if id == Partition.BOOT:
                id = flash.boot
            elif id == Partition.RUNNING:
                id = flash.running
            if id not in flash.data:
                raise ValueError("partition not found")
            self.label = id
            self.bs = block_size

        @classmethod
        def find(cls, type=0, subtype=0xFF, label=None, block_size=4096):
            return [cls(lb, block_size) for lb, t, st in flash.table
                    if t == type and (subtype == 0xFF or st == subtype) and (label is None or label == lb)]

        def _entry(self):
            for i, (lb, t, st) in enumerate(flash.table):
                if lb == self.label:
                    return i, t, st

        def info(self):
            i, t, st = self._entry()
            return (t, st, 0x10000 * (i + 1), len(flash.data[self.label]), self.label, False)

        def _span(self, block_num, n, offset):
            start = block_num * self.bs + offset
            if block_num < 0 or offset < 0 or start + n > len(flash.data[self.label]):
                raise OSError(22, "EINVAL")
            return start

        def readblocks(self, block_num, buf, offset=0):
            start = self._span(block_num, len(buf), offset)
            buf[:] = flash.data[self.label][start : start + len(buf)]

        def writeblocks(self, block_num, buf, offset=None):
            mem = flash.data[self.label]
            if offset is None:  # simple protocol: whole blocks, erased by the driver first
                if len(buf) % self.bs:
                    raise OSError(22, "EINVAL")
                for b in range(len(buf) // self.bs):
                    self.ioctl(6, block_num + b)
                offset = 0
            start = self._span(block_num, len(buf), offset)
            for i in range(len(buf)):
                mem[start + i] &= buf[i]  # NOR flash: bits only go from 1 to 0

        def ioctl(self, cmd, arg):
            if cmd == 4:
                return len(flash.data[self.label]) // self.bs
            if cmd == 5:
                return self.bs
            if cmd == 6:
                start = self._span(arg, self.bs, 0)
                flash.data[self.label][start : start + self.bs] = b"\xff" * self.bs
                flash.erases += 1
                return 0
            return 0  # init, deinit, sync

        def set_boot(self):
            if image_check is not None and not image_check(flash.data[self.label]):
                raise OSError(-5379, "ESP_ERR_OTA_VALIDATE_FAILED")
            flash.boot = self.label

        def get_next_update(self):
            apps = [lb for lb, t, st in flash.table if t == 0 and 0x10 <= st < 0x20]
            if not apps:
                raise OSError(_ESP_ERR_NOT_FOUND, "ENOENT")
            if self.label in apps:
                return Partition(apps[(apps.index(self.label) + 1) % len(apps)], self.bs)
            return Partition(apps[0], self.bs)

        @classmethod
        def mark_app_valid_cancel_rollback(cls):
            flash.valid_marks += 1

    class Module:
        pass

    mod = Module()
    mod.Partition = Partition
    mod.flash = flash
    return mod
