"""A TCP proxy for the MQTT tests: forwards each connection to the server, and on demand cuts the
connections open now (reset(): an RST to both sides) or makes them silently dead (freeze(): both
directions dropped, the sockets left open, which is a half-open connection to the device). Later
connections pass normally, unless blocked (block(): a blackout, every new connection reset at once,
until unblock()). One thread, select()."""

import select
import socket
import struct
import threading


class TcpProxy:
    def __init__(self, port, host="127.0.0.1"):
        self.to = (host, port)
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.pairs = {}  # socket -> [peer socket, frozen]
        self.accepted = 0
        self.blocked = False
        self.refused = 0  # connections reset while blocked
        self.dropped = 0  # bytes dropped on frozen connections
        self.lock = threading.Lock()
        self.running = True
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while self.running:
            with self.lock:
                socks = [self.srv] + list(self.pairs)
            try:
                ready, _, _ = select.select(socks, [], [], 0.05)
            except (OSError, ValueError):
                continue  # a socket closed under us by reset()
            for s in ready:
                if s is self.srv:
                    self._accept()
                    continue
                with self.lock:
                    pair = self.pairs.get(s)
                if pair is None:
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._close(s)
                elif pair[1]:
                    self.dropped += len(data)
                else:
                    try:
                        pair[0].sendall(data)
                    except OSError:
                        self._close(s)

    def _accept(self):
        c, _ = self.srv.accept()
        if self.blocked:
            self.refused += 1
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            return
        u = socket.socket()
        try:
            u.connect(self.to)
        except OSError:
            c.close()
            u.close()
            return
        for s in (c, u):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self.pairs[c] = [u, False]
            self.pairs[u] = [c, False]
            self.accepted += 1

    def _close(self, s, rst=False):
        with self.lock:
            pair = self.pairs.pop(s, None)
            if pair is not None:
                self.pairs.pop(pair[0], None)
        for x in (s, pair[0]) if pair else (s,):
            if rst:
                x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            x.close()

    @property
    def open(self):
        with self.lock:
            return len(self.pairs) // 2

    def freeze(self):
        """The connections open now carry nothing more, either way; nobody is told."""
        with self.lock:
            for pair in self.pairs.values():
                pair[1] = True

    def block(self):
        """A blackout: the connections open now are frozen and new ones reset, until unblock()."""
        self.blocked = True
        self.freeze()

    def unblock(self):
        self.blocked = False

    def reset(self):
        """The connections open now are reset (RST) on both sides."""
        with self.lock:
            socks = [s for s, p in self.pairs.items() if s.getpeername() != self.to]
        for s in socks:
            self._close(s, rst=True)

    def stop(self):
        self.running = False
        self._t.join(timeout=2)
        with self.lock:
            socks = list(self.pairs)
            self.pairs = {}
        for s in socks + [self.srv]:
            s.close()
