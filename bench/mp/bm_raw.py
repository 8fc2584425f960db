# The lower bound: a blocking socket sends the pre-encoded request and readinto()s the
# reply into a preallocated buffer. No encoding, no allocation, no asyncio.
import socket

from bm_common import addr, measure, raw_request


def run(port, metric, n, warm):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(addr(port))
    s.settimeout(5)  # a lost datagram ends the run with OSError instead of hanging it
    req = raw_request()
    buf = bytearray(1280)
    # readinto() on a blocking socket reads until it has as many bytes as asked for
    # (stream semantics: queued datagrams glued together), so ask for exactly the reply's
    # size: the 4-byte header and the echoed token, no options, no payload.
    rlen = 4 + (req[0] & 15)

    def loop(k):
        for _ in range(k):
            s.send(req)
            s.readinto(buf, rlen)

    res = {}
    measure(loop, metric, n, warm, res)
    if n + warm and (buf[1] != 65 or buf[0] & 0x30 != 0x20):
        raise SystemExit("raw: bad reply %r" % bytes(buf[:8]))
    s.close()
    return res
