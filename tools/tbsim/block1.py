"""Block1 (RFC 7959 §2.5) as Californium's BlockwiseLayer does it for ThingsBoard: request bodies arrive in
blocks, each non-final block is answered 2.31 Continue (piggybacked), and the resource sees the whole body
once the last block is in (spec §1: maximum resource body 256 MiB, blockwise status lifetime 300 s)."""

from aiocoap.numbers import Code

_LIFETIME = 300.0
_MAX_BODY = 256 * 1024 * 1024


class Block1Assembler:
    def __init__(self):
        self.transfers = {}  # (peer, code, path, query) -> (bytearray, expiry)

    def feed(self, ex):
        """Returns True when the request is complete (ex.request.payload is then the whole body and
        ex.block1 is set for the final response), False when this block has been answered already."""
        req = ex.request
        block1 = req.opt.block1
        if block1 is None:
            return True
        num, more, szx = block1.block_number, block1.more, block1.size_exponent
        size = 16 << min(szx, 6)
        key = (ex.peer, req.code, tuple(req.opt.uri_path), tuple(req.opt.uri_query))
        now = ex.endpoint.loop.time()
        entry = self.transfers.get(key)
        if entry is not None and entry[1] < now:
            entry = None
        if num == 0:
            entry = (bytearray(), now + _LIFETIME)
        if entry is None or len(entry[0]) != num * size:
            self.transfers.pop(key, None)
            ex.respond(Code.REQUEST_ENTITY_INCOMPLETE, typed=False)
            return False
        body = entry[0]
        body += req.payload
        if len(body) > _MAX_BODY:
            self.transfers.pop(key, None)
            ex.respond(Code.REQUEST_ENTITY_TOO_LARGE, typed=False)
            return False
        if more:
            self.transfers[key] = (body, now + _LIFETIME)
            ex.respond(Code.CONTINUE, typed=False, extra=lambda msg: setattr(msg.opt, "block1", (num, True, szx)))
            return False
        self.transfers.pop(key, None)
        req.payload = bytes(body)
        ex.block1 = (num, False, szx)
        return True
