# The ESP32 OTA sink: the image goes into the next OTA app partition through MicroPython's
# esp32.Partition (docs: library/esp32.rst "Flash partitions"): erase each block with
# ioctl(6, n) and write it whole with writeblocks(n, buf, 0) (the extended block protocol of
# os.AbstractBlockDev), set_boot() when verified (ESP-IDF checks the image there), and
# mark_app_valid_cancel_rollback() once the new image passed its health check; a reset
# before that makes the bootloader roll back (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE).
# Same interface as tbdevice.otasink. One block buffer (4096 bytes) is the only allocation.
from tbdevice.otastate import OtaError

_BLOCK_COUNT = 4  # ioctl ops of the block protocol
_BLOCK_SIZE = 5
_BLOCK_ERASE = 6
_ENOSPC = 28


class PartitionSink:
    needs_reboot = True

    def __init__(self, esp32=None):
        if esp32 is None:
            import esp32
        self.esp32 = esp32
        self.part = None
        self.buf = None
        self.fill = 0
        self.block = 0

    def open(self, pkg, offset):
        P = self.esp32.Partition
        try:
            self.part = P(P.RUNNING).get_next_update()
        except OSError:
            raise OtaError("no OTA app partition to update (the partition table has no ota_0/ota_1 slots)")
        bs = self.part.ioctl(_BLOCK_SIZE, 0)
        room = self.part.ioctl(_BLOCK_COUNT, 0) * bs
        size = pkg.get("size")
        if size and size > room:
            raise OSError(_ENOSPC, "image of %d bytes, partition of %d" % (size, room))
        self.room = room
        if self.buf is None or len(self.buf) != bs:
            self.buf = bytearray(bs)
        offset -= offset % bs  # only whole blocks were written for sure
        self.block = offset // bs
        self.fill = 0
        return offset

    def write(self, data):
        buf = self.buf
        bs = len(buf)
        if self.block * bs + self.fill + len(data) > self.room:
            raise OSError(_ENOSPC, "image larger than the partition")
        i = 0
        n = len(data)
        while i < n:
            k = min(bs - self.fill, n - i)
            buf[self.fill : self.fill + k] = data[i : i + k]
            self.fill += k
            i += k
            if self.fill == bs:
                self._flush_block()

    def _flush_block(self):
        if (self.block + 1) * len(self.buf) > self.room:
            raise OSError(_ENOSPC, "image larger than the partition")
        self.part.ioctl(_BLOCK_ERASE, self.block)
        self.part.writeblocks(self.block, self.buf, 0)
        self.block += 1
        self.fill = 0

    def durable(self):
        return self.block * len(self.buf)

    def replay(self, n, fn):
        mv = memoryview(self.buf)
        bs = len(self.buf)
        b = 0
        while n > 0:
            self.part.readblocks(b, self.buf)
            k = min(n, bs)
            fn(mv[:k])
            n -= k
            b += 1

    def close(self):
        if self.fill:
            # The last, partial block: pad with the erased value.
            for i in range(self.fill, len(self.buf)):
                self.buf[i] = 0xFF
            self._flush_block()

    def discard(self):
        self.fill = 0

    def apply(self, pkg):
        try:
            self.part.set_boot()
        except OSError as e:
            raise OtaError("the bootloader refused the image: %s" % e)

    def confirm(self):
        try:
            self.esp32.Partition.mark_app_valid_cancel_rollback()
        except OSError:
            pass  # a build without rollback support (OSError(-261)): nothing to cancel
