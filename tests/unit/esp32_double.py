# An in-memory stand-in for MicroPython's esp32 module, limited to the documented
# esp32.Partition API (docs/library/esp32.rst "Flash partitions"; os.AbstractBlockDev for
# the block protocol; ports/esp32/esp32_partition.c for the errors), with NOR-flash
# semantics: an erase sets a block to 0xFF, a write can only clear bits, so writing a block
# that was not erased corrupts it, as on the chip.
# make(ota=True) -> an object with .Partition, like `import esp32`. With path=DIR the flash
# lives in files there and each make() is a boot: the bootloader's app rollback
# (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, esp_ota_img_states_t) picks the partition to run:
# a partition set_boot() chose boots as "pending verify"; booting it again while still
# pending (mark_app_valid_cancel_rollback() was not called) aborts it and runs the last
# valid app. rollback=False is a build without the feature (mark_app_valid... raises).
import json

_ENOENT = 2  # no such partition, no OTA partition for get_next_update()
_ESP_ERR_NOT_FOUND = 0x105  # mark_app_valid_cancel_rollback() without rollback support: OSError(-261)
_ESP_ERR_OTA_VALIDATE_FAILED = 0x1503


class Flash:
    def __init__(self, ota=True, app_size=4 * 4096, path=None, rollback=True):
        # (label, type, subtype): factory app, then ota_0/ota_1 when the table has OTA slots
        self.table = [("nvs", 1, 0x02), ("factory", 0, 0x00)]
        if ota:
            self.table += [("ota_0", 0, 0x10), ("ota_1", 0, 0x11)]
        self.sizes = {label: 4096 if t else app_size for label, t, _ in self.table}
        self.data = {}  # label -> bytearray, made erased on first use (the tests run in small heaps)
        self.running = "factory"
        self.boot = "factory"
        self.valid = "factory"  # the last app known good: where a rollback goes
        self.states = {}  # OTA partition label -> "new" | "pending" | "valid" | "aborted"
        self.rollback = rollback
        self.valid_marks = 0
        self.erases = 0
        self.path = path
        if path is not None:
            self._load()

    # ---- persistence (path=DIR): the flash survives the unix port's "reset" ------------
    _KEYS = ("boot", "valid", "states", "valid_marks", "erases")

    def _load(self):
        try:
            with open(self.path + "/flash.json") as f:
                st = json.load(f)
        except OSError:
            st = None
        if st is not None:
            for k in self._KEYS:
                setattr(self, k, st[k])
            for label in self.sizes:
                try:
                    with open(self.path + "/" + label + ".bin", "rb") as f:
                        f.readinto(self.mem(label))
                except OSError:
                    pass
        # the bootloader
        b = self.boot
        st = self.states.get(b)
        if st == "pending" and self.rollback:
            self.states[b] = "aborted"
            b = self.boot = self.valid
        elif st == "new":
            self.states[b] = "pending" if self.rollback else "valid"
        self.running = b
        self.save()

    def mem(self, label):
        m = self.data.get(label)
        if m is None:
            m = self.data[label] = bytearray(self.sizes[label])
            for i in range(len(m)):
                m[i] = 0xFF
        return m

    def save(self, label=None):
        if self.path is None:
            return
        with open(self.path + "/flash.json", "w") as f:
            f.write(json.dumps({k: getattr(self, k) for k in self._KEYS}))
        if label is not None:
            with open(self.path + "/" + label + ".bin", "wb") as f:
                f.write(self.data[label])


def make(ota=True, app_size=4 * 4096, image_check=None, path=None, rollback=True):
    flash = Flash(ota, app_size, path, rollback)

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
            if id not in flash.sizes:
                raise OSError(_ENOENT, "ENOENT")
            self.label = id
            self.bs = block_size

        @staticmethod
        def find(type=0, subtype=0xFF, label=None, block_size=4096):
            return [Partition(lb, block_size) for lb, t, st in flash.table
                    if t == type and (subtype == 0xFF or st == subtype) and (label is None or label == lb)]

        def _entry(self):
            for i, (lb, t, st) in enumerate(flash.table):
                if lb == self.label:
                    return i, t, st

        def info(self):
            i, t, st = self._entry()
            return (t, st, 0x10000 * (i + 1), flash.sizes[self.label], self.label, False)

        def _span(self, block_num, n, offset):
            start = block_num * self.bs + offset
            if block_num < 0 or offset < 0 or start + n > flash.sizes[self.label]:
                raise OSError(22, "EINVAL")
            return start

        def readblocks(self, block_num, buf, offset=0):
            start = self._span(block_num, len(buf), offset)
            buf[:] = flash.mem(self.label)[start : start + len(buf)]

        def writeblocks(self, block_num, buf, offset=None):
            mem = flash.mem(self.label)
            if offset is None:  # simple protocol: whole blocks, erased by the driver first
                if len(buf) % self.bs:
                    raise OSError(22, "EINVAL")
                for b in range(len(buf) // self.bs):
                    self.ioctl(6, block_num + b)
                offset = 0
            start = self._span(block_num, len(buf), offset)
            for i in range(len(buf)):
                mem[start + i] &= buf[i]  # NOR flash: bits only go from 1 to 0
            flash.save(self.label)

        def ioctl(self, cmd, arg):
            if cmd == 4:
                return flash.sizes[self.label] // self.bs
            if cmd == 5:
                return self.bs
            if cmd == 6:
                start = self._span(arg, self.bs, 0)
                mem = flash.mem(self.label)
                for i in range(start, start + self.bs):
                    mem[i] = 0xFF
                flash.erases += 1
                flash.save(self.label)
                return 0
            return 0  # init, deinit, sync

        def set_boot(self):
            if image_check is not None and not image_check(flash.mem(self.label)):
                raise OSError(-_ESP_ERR_OTA_VALIDATE_FAILED, "ESP_ERR_OTA_VALIDATE_FAILED")
            flash.boot = self.label
            flash.states[self.label] = "new"
            flash.save()

        def get_next_update(self):
            apps = [lb for lb, t, st in flash.table if t == 0 and 0x10 <= st < 0x20]
            if not apps:
                raise OSError(_ENOENT, "ENOENT")
            # esp_ota_get_next_update_partition(); the result has the native 4096-byte blocks
            if self.label in apps:
                return Partition(apps[(apps.index(self.label) + 1) % len(apps)])
            return Partition(apps[0])

        @classmethod
        def mark_app_valid_cancel_rollback(cls):
            if not flash.rollback:
                raise OSError(-_ESP_ERR_NOT_FOUND)
            flash.valid_marks += 1
            flash.valid = flash.running
            if flash.running in flash.states:
                flash.states[flash.running] = "valid"
            flash.save()

    class Module:
        pass

    mod = Module()
    mod.Partition = Partition
    mod.flash = flash
    return mod
