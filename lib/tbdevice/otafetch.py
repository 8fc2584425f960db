# Pulling an OTA package from the server (spec §10.2, §10.3), from a byte offset on, each
# piece handed to `await data(memoryview)` as it arrives (never the whole image in RAM):
#   chunks(): GET fw/{token}?title=..&version=..&size=N&chunk=k, k from offset // N to the
#             last chunk that fw_size allows (the server never answers past the end);
#             the same loop serves the HTTP firmware route through the link
#   block2(): sequential Block2 from block 0 on the device's one socket with an unchanged
#             query; when the server has forgotten the transfer (its 300 s blockwise
#             state expired, or the socket changed), block 0 is asked again and the
#             transfer goes on from where the download was
# A failure that retrying will not mend raises OtaError; one that may mend (a 5.xx, a transfer
# the server keeps forgetting) raises tbdevice.errors.Timeout, as every link does (tbdevice/link.py);
# the CoAP stack's own errors and link faults (OSError) pass through to the link, which turns them
# into tbdevice.errors too (coapota). The caller retries from the last durable offset.
from coap import block
from coap import message as m
from coap.route import Route
from coap.errors import Timeout as NoResponse
from tbdevice.errors import TbError, Timeout
from tbdevice.otastate import OtaError

_FOUND = {m.NOT_FOUND: "no package on the server (unassigned, or a URL package)",
          m.BAD_REQUEST: "the server has another package (title/version mismatch)",
          m.UNAUTHORIZED: "the server refused the token"}


def _check(msg, what):
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
        _check(msg, "chunk %d" % k)
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


async def block2(client, route, size, offset, data, con=True, timeout_ms=None, restarts=3):
    """Sequential Block2 (spec §10.2) from `offset`; returns the total size."""
    fails = 0
    while True:
        msg = await client.exchange(m.GET, route, b"", (), con, timeout_ms)
        _check(msg, "block 0")
        b2 = msg.uint(m.BLOCK2)
        p = msg.payload
        if b2 is None:  # small enough for one message
            total = len(p)
            if size is not None and total != size:
                raise OtaError("size mismatch: the server has %d bytes, fw_size says %d" % (total, size))
            if offset < total:
                await data(memoryview(p)[offset:])
            return total
        num, more, szx = block.parse(b2)
        bs = block.size(szx)
        total = msg.uint(m.SIZE2)
        if total is not None and size is not None and total != size:
            raise OtaError("size mismatch: Size2 is %d, fw_size says %d" % (total, size))
        if num != 0 or (more and len(p) != bs):
            raise OtaError("block 0 is malformed (Block2 %d/%d, %d bytes)" % (num, more, len(p)))
        pos = len(p)
        if offset < pos:
            await data(memoryview(p)[offset:])
            offset = pos
        elif offset > pos and more:
            pos = offset - offset % bs  # resume: jump to the block holding offset
        forgot = False
        while more:
            num = pos // bs
            try:
                msg = await client.exchange(m.GET, route, b"", ((m.BLOCK2, block.value(num, False, szx)),), con,
                                            timeout_ms)
            except NoResponse:
                # The whole image in one datagram too large to arrive (spec §10.2) looks like this.
                forgot = True
                break
            _check(msg, "block %d" % num)
            b2 = msg.uint(m.BLOCK2)
            p = msg.payload
            if b2 is None or block.parse(b2)[0] != num or len(p) > bs or (block.parse(b2)[1] and len(p) != bs):
                # A server without our transfer answers with the whole image and M=0
                # (Californium's random-access branch): it forgot; start again.
                forgot = True
                break
            more = block.parse(b2)[1]
            if not more and total is not None and pos + len(p) != total:
                forgot = True
                break
            end = pos + len(p)
            if end > offset:
                await data(memoryview(p)[max(0, offset - pos):])
                offset = end
                fails = 0
            pos = end
        if not forgot:
            if size is not None and pos != size:
                raise OtaError("size mismatch: %d bytes received, fw_size says %d" % (pos, size))
            return pos
        fails += 1
        if fails > restarts:
            raise Timeout("Block2 transfer state lost %d times" % fails)
