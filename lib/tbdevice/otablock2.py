# Sequential Block2 (spec §10.2) for an OTA download over CoAP ({"mode": "block2"}): from
# block 0 on the device's one socket with an unchanged query; when the server has forgotten
# the transfer (its 300 s blockwise state expired, or the socket changed), block 0 is asked
# again and the transfer goes on from where the download was. Loaded only in that mode
# (tbdevice/coapota.py, which also has check()); the chunked download is tbdevice/otafetch.py.
from coap import block
from coap import message as m
from coap.errors import Timeout as NoResponse
from tbdevice.errors import Timeout
from tbdevice.coapota import check
from tbdevice.otastate import OtaError


async def fetch(client, route, size, offset, data, con=True, timeout_ms=None, restarts=3):
    """Sequential Block2 (spec §10.2) from `offset`; returns the total size."""
    fails = 0
    while True:
        msg = await client.exchange(m.GET, route, b"", (), con, timeout_ms)
        check(msg, "block 0")
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
            check(msg, "block %d" % num)
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
            msg = p = None  # as in otafetch.chunks: the datagram goes before the next is read
        if not forgot:
            if size is not None and pos != size:
                raise OtaError("size mismatch: %d bytes received, fw_size says %d" % (pos, size))
            return pos
        fails += 1
        if fails > restarts:
            raise Timeout("Block2 transfer state lost %d times" % fails)
