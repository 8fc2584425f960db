# MqttLink.download (tbdevice/link.py): an assigned OTA package over MQTT, loaded only when there
# is a download to make (wire-mqtt §11.2). One chunk at a time: PUBLISH
# v2/fw/request/{id}/chunk/{n} with the chunk size as ASCII decimal, the answer comes on
# v2/fw/response/{id}/chunk/{n} as raw bytes into one chunk-sized buffer, and goes on to
# `await data(memoryview)` (the sink) before the next is asked for: never the whole image in RAM,
# never a size of 0 (which would send the whole image in one PUBLISH). A new request id for each
# download: ThingsBoard fixes the package per id for the connection's life. The chunk count comes
# from fw_size; an error on v2/fw/error (NOT_FOUND, FAILURE: a URL package, PAYLOAD_TOO_LARGE) is
# an OtaError, and the server then closes the connection.
from tbdevice.otastate import OtaError

_WHY = {"NOT_FOUND": "no package assigned on the server", "FAILURE": "a URL package is not served over MQTT",
        "PAYLOAD_TOO_LARGE": "chunk size above the server's limit"}


class _Chunks:
    """What the link hands v2/... PUBLISHes to while a download runs (MqttLink.v2)."""

    def __init__(self, kind, rid, chunk_size):
        self.prefix = ("v2/%s/response/%d/chunk/" % (kind, rid)).encode()
        self.buf = bytearray(chunk_size)
        self.want = -1
        self.got = None  # bytes of chunk `want` in buf, once it came
        self.error = None

    def received(self, buf, a, b, p, end):
        if b - a == 11 and (buf.startswith(b"v2/fw/error", a) or buf.startswith(b"v2/sw/error", a)):
            self.error = bytes(buf[p:end]).decode() or "error"
        elif buf.startswith(self.prefix, a):
            k = bytes(buf[a + len(self.prefix):b])
            if not k.isdigit() or int(k) != self.want:
                return  # a late answer to an earlier try
            n = end - p
            if n > len(self.buf):
                self.error = "chunk %d has %d bytes, %d asked for" % (self.want, n, len(self.buf))
                return
            memoryview(self.buf)[:n] = memoryview(buf)[p:end]
            self.got = n

    def done(self):
        return self.got is not None or self.error is not None

    def check(self):
        if self.error is not None:
            raise OtaError("v2 error %s (%s)" % (self.error, _WHY.get(self.error, "from the server")))


async def download(link, kind, pkg, offset, data, chunk_size, timeout_ms):
    size = pkg.get("size")
    if size is None:
        raise OtaError("fw_size is missing: chunked download needs it")
    rid = link.new_id()
    c = _Chunks(kind, rid, chunk_size)
    ask = ("v2/%s/request/%d/chunk/" % (kind, rid)).encode()
    text = str(chunk_size)  # ASCII decimal and nothing else: a newline closes the connection
    k = offset // chunk_size
    skip = offset - k * chunk_size
    n = (size + chunk_size - 1) // chunk_size
    link.v2 = c
    try:
        while k < n:
            want = min(chunk_size, size - k * chunk_size)
            c.want = k
            c.got = None
            try:
                await link.exchange(ask + str(k).encode(), text, c.done, timeout_ms, "chunk %d" % k)
            except OSError:
                c.check()  # the server closes the connection after an error message
                raise
            c.check()
            if c.got < want:
                raise OtaError("truncated: chunk %d has %d bytes, %d expected from fw_size %d" % (k, c.got, want, size))
            if c.got > want:
                raise OtaError("size mismatch: chunk %d has %d bytes, fw_size %d allows %d" % (k, c.got, size, want))
            await data(memoryview(c.buf)[skip:want])
            skip = 0
            k += 1
    finally:
        link.v2 = None
