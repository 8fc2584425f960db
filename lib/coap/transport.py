# The only code in lib/coap that touches sockets: a connected UDP socket.
# Connecting the socket makes the kernel (or lwIP) drop datagrams from any other peer,
# which is how responses are matched "by token and peer" (RFC 7252 §5.3.2).
import socket

_EAGAIN = (11, 35)  # Linux/lwIP, macOS


class UdpTransport:
    """Resolves the host once per open() (DESIGN §5: never per send)."""

    secure = False  # DTLS sets it: silence then means a lost session (coap.dtls)

    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.sock = None

    def open(self):
        self.close()
        ai = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)[0]
        s = socket.socket(ai[0], socket.SOCK_DGRAM)
        try:
            s.connect(ai[-1])
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self.sock = s

    def send(self, data, n=-1):
        """Send data, or its first n bytes: stream write(buf, n) sends that prefix as one
        datagram without slicing (no memoryview allocated per message)."""
        if self.sock is None:
            raise OSError(9)  # EBADF: closed after a fault; a transport fault like any other
        if n < 0:
            self.sock.send(data)
        else:
            self.sock.write(data, n)

    def recv_into(self, buf):
        """Bytes received (one datagram), or None when nothing is waiting. A datagram
        longer than buf is not copied: the length returned is then > len(buf), and the
        caller drops it (cut to the buffer it could pass for a shorter, valid message)."""
        try:
            # Not sock.readinto(buf): MicroPython's stream readinto keeps reading until buf
            # is full or the socket would block, so it glues queued datagrams together.
            # recv() returns exactly one datagram (at the cost of one allocation); one
            # byte more than buf tells an oversized datagram from one that fits exactly.
            data = self.sock.recv(len(buf) + 1)
        except OSError as e:
            if e.args[0] in _EAGAIN:
                return None
            raise
        return copy_in(buf, data)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def copy_in(buf, data):
    """Copy one received datagram into buf; its length (> len(buf) when it did not fit:
    nothing is copied then, and a bytearray never grows)."""
    n = len(data)
    if n <= len(buf):
        buf[:n] = data
    return n
