# The only code in lib/coap that touches sockets: a connected UDP socket.
# Connecting the socket makes the kernel (or lwIP) drop datagrams from any other peer,
# which is how responses are matched "by token and peer" (RFC 7252 §5.3.2).
import socket

_MSG_PEEK = getattr(socket, "MSG_PEEK", 0)
_SHORT = 128  # datagrams shorter than this (ACKs, answers, RPC requests, most notifications) are read through a peek (recv)


class UdpTransport:
    """Resolves the host once per open() (DESIGN §5: never per send)."""

    secure = False  # DTLS sets it: silence then means a lost session (coap.dtls)

    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.sock = None
        self._peek = False
        self._one = bytearray(1)

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
        self._peek = False
        if _MSG_PEEK:
            try:
                s.recv(1, _MSG_PEEK)  # nothing is there yet: EAGAIN if recv takes flags
            except OSError:
                self._peek = True
            except TypeError:  # a port whose recv takes no flags (older releases)
                pass

    def handshake(self, first):
        """True once the socket can carry datagrams; a transport with a handshake (coap.dtls)
        takes one step of it per call and then sends `first`. UDP has none."""
        return True

    def send(self, data, n=-1):
        """Send data, or its first n bytes: stream write(buf, n) sends that prefix as one
        datagram without slicing (no memoryview allocated per message)."""
        if self.sock is None:
            raise OSError(9)  # EBADF: closed after a fault; a transport fault like any other
        if n < 0:
            self.sock.send(data)
        else:
            self.sock.write(data, n)

    def recv(self, maxlen):
        """One datagram (bytes; at most maxlen of it). Raises OSError EAGAIN when nothing
        is waiting. recv(), not readinto(): MicroPython's stream readinto keeps reading
        until the buffer is full or the socket would block, so it glues queued datagrams
        together. recv(n) allocates n bytes, found by a search of the heap, per call;
        where recv takes flags (the unix port; ESP32 and RP2 too, by MicroPython's socket
        docs, in current releases), a short datagram (most answers and ACKs)
        is peeked at with a small buffer instead, then dropped from the queue by reading
        one byte of it into a buffer kept for that."""
        if self._peek:
            d = self.sock.recv(_SHORT, _MSG_PEEK)
            if len(d) < _SHORT:
                self.sock.readinto(self._one, 1)  # consumes the whole datagram
                return d
        return self.sock.recv(maxlen)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
