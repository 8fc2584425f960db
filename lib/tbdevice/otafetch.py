# Pulling an OTA package from the server in chunks (spec §10.2, §10.3), from a byte offset on,
# each piece handed to `await data(memoryview)` as it arrives (never the whole image in RAM):
# chunks() asks for chunk k = offset // N up to the last one fw_size allows (the server never
# answers past the end), through a getter the link gives: CoAP's GET fw/{token}?...&size=N&chunk=k
# (tbdevice/coapota.py) or HTTP's firmware route (http_chunk_getter, below). This module imports
# no transport, so an HTTP device's update does not load the CoAP stack.
# A failure that retrying will not mend raises OtaError; one that may mend (a 5.xx) raises
# tbdevice.errors.Timeout, as every link does (tbdevice/link.py). The caller retries from the last
# durable offset.
from tbdevice.errors import TbError, Timeout
from tbdevice.otastate import OtaError


async def chunks(get, size, chunk_size, offset, data):
    """Chunks of chunk_size bytes from the one holding `offset`; get(k) -> bytes."""
    if size is None:
        raise OtaError("fw_size is missing: chunked download needs it")
    k = offset // chunk_size
    skip = offset - k * chunk_size
    n = (size + chunk_size - 1) // chunk_size
    while k < n:
        want = min(chunk_size, size - k * chunk_size)
        p = await get(k)
        if len(p) < want:
            raise OtaError("truncated: chunk %d has %d bytes, %d expected from fw_size %d" % (k, len(p), want, size))
        if len(p) > want:
            raise OtaError("size mismatch: chunk %d has %d bytes, fw_size %d allows %d" % (k, len(p), size, want))
        await data(memoryview(p)[skip:])
        p = None  # written: its datagram leaves the heap before the next one is read into it
        skip = 0
        k += 1


def http_chunk_getter(link, kind, pkg, chunk_size, timeout_ms=None):
    what = "firmware" if kind == "fw" else "software"

    async def get(k):
        try:
            return await link.fetch_firmware(pkg["title"], pkg["version"], chunk_size, k, what, timeout_ms)
        except TbError as e:
            code = getattr(e, "code", 0) or 0
            if code >= 500:
                raise Timeout("chunk %d: %s" % (k, e), code)
            raise OtaError("chunk %d: %s" % (k, e))

    return get
