# tbdevice.mqttconn.Wire.write() when the socket takes only part of a packet: the rest waits in
# the stream's buffer, a task drains it, later packets go behind it, and flush() waits for all of
# it. A listening socket in this process that reads only after the writes, and small socket
# buffers, make the partial writes certain. For tests/integration/test_mqtt_device.py:
#   micropython mqtt_wire_partial.py PORT
import asyncio
import socket
import sys

from tbdevice.mqttconn import Wire

N = 6
SIZE = 30000


async def main(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    srv.listen(1)
    w = Wire()
    await w.dial("127.0.0.1", port, None, "127.0.0.1")
    conn, _ = srv.accept()
    w.sock.setsockopt(socket.SOL_SOCKET, 7, 4096)  # SO_SNDBUF
    parts = [bytes([i + 1]) * SIZE for i in range(N)]
    for p in parts:
        w.write(p)
    partial = w.pending
    conn.setblocking(False)
    got = bytearray()
    while len(got) < N * SIZE:
        d = conn.read(65536)
        if d:
            got.extend(d)
        else:
            await asyncio.sleep_ms(2)  # the flusher's turn
    await w.flush()
    print("partial", partial, "pending", w.pending, "same", got == b"".join(parts))
    w.close()
    conn.close()
    srv.close()


asyncio.run(main(int(sys.argv[1])))
