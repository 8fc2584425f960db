# The ESP32 OTA sinks (same interface as tbdevice.otasink).
# PartitionSink: a MicroPython image (a custom build, the app frozen in) into the next OTA app
# partition through MicroPython's esp32.Partition (docs: library/esp32.rst "Flash partitions"):
# erase each block with ioctl(6, n) and write it whole with writeblocks(n, buf, 0) (the extended
# block protocol of os.AbstractBlockDev), set_boot() when verified (ESP-IDF checks the image
# there), and mark_app_valid_cancel_rollback() once the new image passed its health check; a
# reset before that makes the bootloader roll back (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE).
# One block buffer (4096 bytes) is the only allocation.
# Esp32Sink: what an ESP32 takes as firmware, told apart by the package's first bytes: an
# application bundle (b"TBB1", tbdevice.bundle) goes to a file-system slot with trial boot and
# rollback as on the Pico W (stock MicroPython has no OTA partitions), an ESP32 app image
# (0xE9 and its header) to the partition.
import struct

from tbdevice.otastate import OtaError

_BLOCK_COUNT = 4  # ioctl ops of the block protocol
_BLOCK_SIZE = 5
_BLOCK_ERASE = 6
_ENOSPC = 28
# ESP-IDF's app image (components/bootloader_support/include/esp_app_format.h): a 24-byte
# esp_image_header_t (magic 0xE9, segment count, ..., chip id at 12), the first segment's
# 8-byte header, then that segment, which in an app starts with esp_app_desc_t (magic word
# 0xABCD5432, then version[32] at 16 and project_name[32] at 48).
_IMAGE_MAGIC = 0xE9
_APP_DESC = 32
_APP_DESC_MAGIC = 0xABCD5432
HEAD = 36  # bytes that tell a bundle from an image


def app_image(head):
    """True when head (HEAD bytes or more) starts an ESP32 app image."""
    return (len(head) >= HEAD and head[0] == _IMAGE_MAGIC and 0 < head[1] <= 16
            and struct.unpack_from("<I", head, _APP_DESC)[0] == _APP_DESC_MAGIC)


def _cstr(b, start, n):
    b = bytes(b[start : start + n])
    i = b.find(b"\0")
    return (b if i < 0 else b[:i]).decode()


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
            raise OtaError("no OTA app partition to update (the partition table has no ota_0/ota_1 slots; "
                           "stock MicroPython takes application bundles, make bundle)")
        bs = self.part.ioctl(_BLOCK_SIZE, 0)
        room = self.part.ioctl(_BLOCK_COUNT, 0) * bs
        size = pkg.get("size")
        if size and size > room:
            raise OSError(_ENOSPC, "image of %d bytes, partition of %d" % (size, room))
        self.room = room
        if self.buf is None or len(self.buf) != bs:
            self.buf = bytearray(bs)
        offset -= offset % bs  # only whole blocks were written for sure
        if offset:
            self.part.readblocks(0, self.buf)
            if not app_image(self.buf):
                offset = 0  # what is there is not the start of an image: start over
        self.block = offset // bs
        self.fill = 0
        return offset

    def check_head(self, head):
        """Refuse an image built for another chip before any of it is written: its header's
        chip id against the running image's (ESP-IDF checks it again at set_boot())."""
        P = self.esp32.Partition
        mine = bytearray(16)
        try:
            P(P.RUNNING).readblocks(0, mine)
        except OSError:
            return
        want, have = head[12] | head[13] << 8, mine[12] | mine[13] << 8
        if mine[0] == _IMAGE_MAGIC and want != have:
            raise OtaError("the image is for ESP chip id %d, this chip's is %d" % (want, have))

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
        b = self.buf
        self.part.readblocks(0, b)
        d = _APP_DESC
        what = "an ESP32 app image"
        if app_image(b):
            what += " (%s %s)" % (_cstr(b, d + 48, 32), _cstr(b, d + 16, 32))
        return what + " in partition " + self.part.info()[4]

    def confirm(self):
        from tbdevice.otaboot import cancel_rollback

        cancel_rollback(self.esp32)


class Esp32Sink:
    """The ESP32's firmware sink: the first HEAD bytes of the package pick `bundle` (a
    tbdevice.otasink.SlotSink) or `image` (a PartitionSink); nothing is written before."""

    needs_reboot = True

    def __init__(self, bundle, image):
        self.bundle = bundle
        self.image = image
        self.sink = None
        self.head = b""
        self.pkg = None

    def open(self, pkg, offset):
        self.pkg = pkg
        self.head = b""
        self.sink = None
        if offset:
            # Resumed: what is on flash says which it was (a partial bundle is a file that
            # starts with its magic; PartitionSink.open checks its first block).
            from tbdevice import bundle

            try:
                with open(self.bundle.part, "rb") as f:
                    is_bundle = f.read(4) == bundle.MAGIC
            except OSError:
                is_bundle = False
            s = self.bundle if is_bundle else self.image
            offset = s.open(pkg, offset)
            if offset:
                self.sink = s
            else:
                s.close()  # nothing to resume: the first bytes choose again
        return offset

    def write(self, data):
        if self.sink is None:
            n = HEAD - len(self.head)
            self.head += bytes(data[:n])
            if len(self.head) < HEAD:
                return
            self._pick()
            data = data[n:]
        self.sink.write(data)

    def _pick(self):
        from tbdevice import bundle

        head = self.head
        if head[:4] == bundle.MAGIC:
            s = self.bundle
        elif app_image(head):
            s = self.image
            s.check_head(head)
        else:
            raise OtaError("neither an application bundle (%s) nor an ESP32 app image (0x%02X): it starts with %s" % (
                bundle.MAGIC.decode(), _IMAGE_MAGIC, "".join("%02x" % x for x in head[:8])))
        s.open(self.pkg, 0)
        self.sink = s
        s.write(head)
        self.head = b""

    def durable(self):
        return self.sink.durable() if self.sink else 0

    def replay(self, n, fn):
        self.sink.replay(n, fn)

    def close(self):
        if self.sink is not None:
            self.sink.close()

    def discard(self):
        if self.sink is not None:
            self.sink.discard()
        self.sink = None
        self.head = b""

    def apply(self, pkg):
        s = self.sink
        if s is None:
            raise OtaError("the package has %d bytes: neither an application bundle nor an ESP32 app image"
                           % len(self.head))
        what = s.apply(pkg)
        if s is self.image:
            # The new image runs its own (frozen) code: no slot may shadow it. The slots'
            # pointer boots "no slot" on trial, falling back with the bootloader's rollback.
            b = self.bundle
            b.shim().switch(b.state_dir, None)
        return what

    def confirm(self):
        # After the reboot nothing says which of the two was applied: confirm both (each is a
        # no-op unless its own image is on trial).
        self.bundle.confirm()
        self.image.confirm()
