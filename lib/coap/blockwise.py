# Block-wise transfers (RFC 7959) for Client.request(): Block1 uploads and sequential Block2
# downloads, each block its own exchange with a fresh token (§2.6 requires that for observe
# continuations; it is always allowed). Loaded when a transfer needs it.
from coap import block
from coap import message as m
from coap.errors import BadResponse

MAX_BODY = 65536  # largest body assembled in RAM; stream bigger ones through a sink


def _without(options, nums):
    return [o for o in options if o[0] not in nums]


async def upload(cl, code, route, payload, options, con, timeout_ms):
    """Send payload in Block1 blocks of at most cl.block_size (§2.5); returns the response
    to the last block, or the server's answer when it refuses one mid-way."""
    if type(payload) is str:
        payload = payload.encode()
    base = _without(options, (m.BLOCK1, m.SIZE1))
    szx = block.szx_for(cl.block_size)
    mv = memoryview(payload)
    total = len(payload)
    off = 0
    while True:
        size = block.size(szx)
        more = off + size < total
        opts = base + [(m.BLOCK1, block.value(off // size, more, szx))]
        if off == 0:
            opts.append((m.SIZE1, total))  # §4: announce the total size
        msg = await cl.exchange(code, route, mv[off : off + size], opts, con, timeout_ms)
        if not more or msg.code != m.CONTINUE:
            return msg  # the last block's response, or the server refused mid-way (4.08, 4.13, ...)
        b1 = msg.uint(m.BLOCK1)
        if b1 is not None:
            rszx = block.parse(b1)[2]
            if rszx < szx:
                szx = rszx  # the server asks for smaller blocks (§2.5)
        off += size


async def follow(cl, code, route, options, con, timeout_ms, sink, msg):
    """Continue a Block2 transfer whose first response is msg (§2.4, §3)."""
    base = _without(options, (m.BLOCK1, m.SIZE1, m.BLOCK2))
    body = None if sink is not None else bytearray()
    etag = msg.opt(m.ETAG)
    off = 0
    while True:
        if msg.code >> 5 != 2:
            return msg  # an error mid-transfer is the answer
        b2 = msg.uint(m.BLOCK2)
        if b2 is None:
            raise BadResponse("Block2 missing in a block-wise response")
        num, more, szx = block.parse(b2)
        if num * block.size(szx) != off:
            raise BadResponse("block %d does not start at offset %d" % (num, off))
        if msg.opt(m.ETAG) != etag:
            raise BadResponse("representation changed during the transfer")  # §2.4
        p = msg.payload
        if more and len(p) != block.size(szx):
            raise BadResponse("short block before the last")
        off += len(p)
        if sink is not None:
            sink(p)
        else:
            if off > MAX_BODY:
                raise BadResponse("body larger than %d bytes" % MAX_BODY)
            body.extend(p)
        if not more:
            break
        nxt = base + [(m.BLOCK2, block.value(off // block.size(szx), False, szx))]
        msg = await cl.exchange(code, route, b"", nxt, con, timeout_ms)
    if body is not None:
        msg.payload = bytes(body)
    return msg
