# The asyncio cases: the raw datagram through asyncio's IO queue, then each layer of the
# coap stack in turn (exchange, request); the tbdevice cases are in bm_dev.
import asyncio
import socket

from bm_common import HOST, TOKEN, VALUES, addr, ameasure, payload_bytes, raw_request


async def run(case, port, metric, n, warm):
    if case == "araw":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(addr(port))
        s.setblocking(False)
        req = raw_request()
        buf = bytearray(1280)
        rlen = 4 + (req[0] & 15)  # see bm_raw: readinto() glues datagrams otherwise
        wait = asyncio.core._io_queue.queue_read

        async def loop(k):
            # Always through the IO queue (poll), as coap.client's receive task does, so the
            # path does not depend on whether the reply is already there.
            for _ in range(k):
                s.send(req)
                yield wait(s)
                while s.readinto(buf, rlen) is None:
                    yield wait(s)

    elif case == "transport":
        # araw through coap.transport.UdpTransport (send, and recv as coap.client's receive
        # path calls it: a short datagram is peeked at, then dropped from the queue).
        from coap.transport import UdpTransport

        t = UdpTransport(HOST, port)
        t.open()
        req = raw_request()
        wait = asyncio.core._io_queue.queue_read

        async def loop(k):
            for _ in range(k):
                t.send(req)
                yield wait(t.sock)
                t.recv(1281)

    elif case == "exchange" or case == "request":
        from coap.client import Client, Route
        from coap import message as m

        c = Client(HOST, port)
        await c.connect()
        route = Route("api/v1/" + TOKEN + "/telemetry")
        body = payload_bytes()
        if case == "exchange":
            send = c.exchange
        else:
            send = c.request
            body = body.decode()  # as tbdevice hands it over: a str

        async def loop(k):
            for _ in range(k):
                msg = await send(m.POST, route, body)
                if msg.code != m.CREATED:
                    raise SystemExit("bad code %d" % msg.code)

    elif case == "wait":
        # asyncio.wait_for_ms() on an Event that is already set: the per-request wait
        # machinery of coap.client, without any I/O.
        ev = asyncio.Event()
        ev.set()

        async def loop(k):
            for _ in range(k):
                await asyncio.wait_for_ms(ev.wait(), 2000)

    elif case == "coro":
        # Awaiting one trivial coroutine: what each async layer of a call costs.
        async def one():
            return 1

        async def loop(k):
            for _ in range(k):
                await one()

    else:
        raise SystemExit("unknown case " + case)
    res = {}
    await ameasure(loop, metric, n, warm, res)
    return res
