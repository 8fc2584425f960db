# Benchmark responder (CPython): answers every CON request with a piggybacked ACK 2.01
# (RFC 7252 §5.2.1) echoing its Message ID and token, every NON request with a NON 2.01
# echoing its token under a Message ID of its own (§5.2.3), and ignores anything else.
# A tight recvfrom_into/sendto loop on preallocated buffers; on this machine it turns
# round trips as fast as a MicroPython unix-port loop does, and unlike MicroPython's
# stream readinto() it keeps datagram boundaries and serves any number of peers, so the
# raw bound and the stack talk to the same port.
#   python responder.py <port> [--log]
# Prints "PORT <n>" once bound; with --log, "REQ <hex>" and "RSP <hex>" for the first
# request of each new peer (the driver checks and sizes them).
import socket
import sys

_ACK = 0x60  # version 1, type ACK (2); the token length is added per request
_NON = 0x50  # version 1, type NON (1)
_CREATED = 65  # 2.01


def main():
    port = int(sys.argv[1])
    log = "--log" in sys.argv[2:]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    print("PORT", port, flush=True)
    rx = bytearray(1280)
    out = bytearray(12)
    mrx = memoryview(rx)
    mout = memoryview(out)
    views = [mout[: 4 + k] for k in range(9)]  # one reply view per token length
    recv_into = s.recvfrom_into
    sendto = s.sendto
    seen = set()
    mid = 0x2000
    while True:
        n, peer = recv_into(rx)
        b0 = rx[0] if n else 0
        if n < 4 or (b0 & 0xF0 != 0x40 and b0 & 0xF0 != 0x50):  # version 1, CON or NON; nothing else is ours to answer
            continue
        tkl = b0 & 15
        if tkl > 8 or n < 4 + tkl or rx[1] == 0:
            continue
        out[1] = _CREATED
        mout[2 : 4 + tkl] = mrx[2 : 4 + tkl]  # Message ID and token echoed
        if b0 & 0xF0 == 0x40:
            out[0] = _ACK | tkl
        else:
            out[0] = _NON | tkl
            mid = (mid + 1) & 0xFFFF
            out[2] = mid >> 8
            out[3] = mid & 0xFF
        sendto(views[tkl], peer)
        if log and peer not in seen:
            seen.add(peer)
            print("REQ", bytes(mrx[:n]).hex(), flush=True)
            print("RSP", bytes(views[tkl]).hex(), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
