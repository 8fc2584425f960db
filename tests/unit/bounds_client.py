# The CoAP client's receive path under oversized input, on the unix port (issue 8): a peer on
# loopback answers with a datagram longer than the receive buffer, a response with a thousand
# options, and a Block2 body that never ends. Each is dropped or refused, the client goes on,
# and the heap after gc.collect() is back where it was. Prints one JSON line.
import asyncio
import gc
import json
import socket
import sys

from coap import blockwise
from coap import message as m
from coap.client import Client
from coap.errors import BadResponse, Timeout

ROUNDS = 10


def heap():
    gc.collect()
    return gc.mem_alloc()


class Peer:
    """A scripted server socket: answers each request by the current mode."""

    def __init__(self, port):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        self.s.setblocking(False)
        self.mode = "ok"

    def answer(self, data, addr):
        req = m.decode(data)
        if not req.is_request():
            return
        def reply(code, payload=b"", opts=()):
            r = m.Message(m.ACK, code, req.mid, req.token, payload)
            for n, v in opts:
                r.add(n, v)
            self.s.sendto(r.encode(), addr)
        if self.mode == "oversized":
            # 2000 bytes first (dropped), then the real answer: the client is still there
            big = m.Message(m.ACK, m.CONTENT, req.mid, req.token, b"z" * 2000).encode()
            self.s.sendto(big, addr)
            reply(m.CONTENT, b"after")
        elif self.mode == "options":
            head = m.Message(m.ACK, m.CONTENT, req.mid, req.token).encode()
            self.s.sendto(head + bytes([m.URI_PATH << 4]) + b"\x00" * 1000, addr)  # dropped (FormatError)
            reply(m.CONTENT, b"after")
        elif self.mode == "endless":
            b2 = req.uint(m.BLOCK2, 0)
            num = b2 >> 4
            reply(m.CONTENT, b"b" * 512, [(m.BLOCK2, (num << 4) | 8 | 5)])  # 512-byte blocks, always "more"
        else:
            reply(m.CONTENT, b"ok")

    async def run(self):
        while True:
            try:
                data, addr = self.s.recvfrom(2048)
            except OSError:
                await asyncio.sleep_ms(2)
                continue
            self.answer(data, addr)


async def main():
    port = int(sys.argv[1])  # a free port the host test found (this port's sockets have no getsockname)
    peer = Peer(port)
    task = asyncio.create_task(peer.run())
    # Nothing here waits for a timeout: long timers, so that a loaded machine's pause never causes a
    # retransmission (answered twice: the counts below would be off) or a Timeout instead of the answer.
    cl = Client("127.0.0.1", port, ack_timeout_ms=5000, max_retransmit=1, timeout_ms=30000)
    await cl.connect()
    out = {}
    blockwise.MAX_BODY = 4096  # a tunable: the default 65536 would only take longer
    for mode in ("oversized", "options", "endless"):
        peer.mode = mode
        got = None
        for i in range(ROUNDS + 1):
            if i == 1:
                before = heap()  # after one round: lazily made tables and imports are not a leak
            try:
                r = await cl.request(m.GET, "x")
                got = bytes(r.payload)
            except (BadResponse, Timeout) as e:
                got = type(e).__name__
        out[mode] = {"got": got if isinstance(got, str) else got.decode(), "grown": heap() - before}
    peer.mode = "ok"
    r = await cl.request(m.GET, "x")
    out["after"] = bytes(r.payload).decode()
    out["oversized_count"] = cl.oversized
    out["rejected"] = cl.rejected
    out["rx_error"] = repr(cl.rx_error) if cl.rx_error else None
    task.cancel()
    print(json.dumps(out))


asyncio.run(main())
