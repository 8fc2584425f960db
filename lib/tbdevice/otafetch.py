# Pulling an OTA package from the server (spec §10.2, §10.3), from a byte offset on, each
# piece handed to `await data(memoryview)` as it arrives (never the whole image in RAM):
#   chunks(): GET fw/{token}?title=..&version=..&size=N&chunk=k, k from offset // N to the
#             last chunk that fw_size allows (the server never answers past the end);
#             the same loop serves the HTTP firmware route through the link
#   Block2:   tbdevice/otablock2.py, loaded only in that mode
# A failure that retrying will not mend raises OtaError; one that may mend (a 5.xx, a transfer
# the server keeps forgetting) raises tbdevice.errors.Timeout, as every link does (tbdevice/link.py);
# the CoAP stack's own errors and link faults (OSError) pass through to the link, which turns them
# into tbdevice.errors too (coapota). The caller retries from the last durable offset.
from coap import message as m
from coap.route import Route
from tbdevice.errors import TbError, Timeout
from tbdevice.otastate import OtaError

_FOUND = {m.NOT_FOUND: "no package on the server (unassigned, or a URL package)",
          m.BAD_REQUEST: "the server has another package (title/version mismatch)",
          m.UNAUTHORIZED: "the server refused the token"}


def check(msg, what):
    c = msg.code
    if c == m.CONTENT:
        return
    why = _FOUND.get(c)
    if why:
        raise OtaError("%s: %s (%s)" % (what, why, m.code_str(c)))
    raise Timeout("%s: %s" % (what, m.code_str(c)), c)  # 5.xx: worth another try later


def coap_route(kind, token, pkg, path="fw", extra=()):
    """The download route: fw/{token} or sw/{token} (spec §10.2); path="api" gives the
    seeds' api/v1/{token}/firmware (not served by ThingsBoard over CoAP, spec §10.2)."""
    if path == "api":
        p = "api/v1/%s/%s" % (token, "firmware" if kind == "fw" else "software")
    else:
        p = kind + "/" + token
    # One Uri-Query option per name=value (spec §6.1); the values need no escaping here.
    return Route(p, ("title=" + pkg["title"], "version=" + pkg["version"]) + tuple(extra))


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
        skip = 0
        k += 1


def coap_chunk_getter(client, route, con=True, timeout_ms=None):
    async def get(k):
        msg = await client.exchange(m.GET, route, b"", ((m.URI_QUERY, "chunk=%d" % k),), con, timeout_ms)
        check(msg, "chunk %d" % k)
        return msg.payload

    return get


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
