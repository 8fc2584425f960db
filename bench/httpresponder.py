# Benchmark HTTP responder (CPython): HTTP/1.1 with keep-alive, answers every request with
# `200 OK`, `Content-Length: 0` and nothing else (38 bytes). One thread per connection,
# blocking sockets, a preallocated buffer; the request head is read up to its blank line
# and a Content-Length body after it.
#   python httpresponder.py <port> [--log]
# Prints "PORT <n>" once listening; with --log, "REQ <hex>" and "RSP <hex>" for the first
# request of each connection.
import socket
import sys
import threading

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def serve(c, log):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(65536)
    mv = memoryview(buf)
    have = 0
    first = True
    try:
        while True:
            # a whole head: up to the blank line
            while True:
                end = buf.find(b"\r\n\r\n", 0, have)
                if end >= 0:
                    break
                k = c.recv_into(mv[have:])
                if not k:
                    return
                have += k
            head = bytes(buf[:end]).lower()
            blen = 0
            i = head.find(b"content-length:")
            if i >= 0:
                blen = int(head[i + 15 :].split(b"\r\n", 1)[0])
            total = end + 4 + blen
            while have < total:
                k = c.recv_into(mv[have:])
                if not k:
                    return
                have += k
            c.sendall(RESPONSE)
            if log and first:
                first = False
                print("REQ", bytes(buf[:total]).hex(), flush=True)
                print("RSP", RESPONSE.hex(), flush=True)
            mv[: have - total] = mv[total:have]
            have -= total
    except OSError:
        pass
    finally:
        c.close()


def listen(serve):
    """The command line of a TCP responder: `<port> [--log]`; serve(conn, log) in a thread per
    connection (bench/mqttresponder.py too)."""
    port = int(sys.argv[1])
    log = "--log" in sys.argv[2:]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    print("PORT", port, flush=True)
    try:
        while True:
            c, _ = s.accept()
            threading.Thread(target=serve, args=(c, log), daemon=True).start()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    listen(serve)
