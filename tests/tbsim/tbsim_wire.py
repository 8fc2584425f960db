"""A raw CoAP peer for wire tests: aiocoap's codec over a plain UDP socket, so the test sees every
message (types, MIDs, ACKs) exactly as tbsim sends it."""

import os
import random
import socket
import time

from aiocoap.message import Message
from aiocoap.numbers import Code, Type

CON, NON, ACK, RST = Type.CON, Type.NON, Type.ACK, Type.RST


class Received:
    def __init__(self, msg, at, raw):
        self.msg = msg
        self.raw = raw  # the datagram as received
        self.at = at   # time.monotonic() on arrival

    def __getattr__(self, name):
        return getattr(self.msg, name)


class RawPeer:
    def __init__(self, port, host="127.0.0.1"):
        self.server = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self._mid = random.randrange(65536)

    def close(self):
        self.sock.close()

    def next_mid(self):
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def build(self, code, path, payload=b"", mtype=CON, token=None, mid=None, observe=None, queries=(),
              content_format=None, path_as_one_option=False):
        msg = Message(code=code, payload=payload if isinstance(payload, bytes) else payload.encode())
        msg.mtype = mtype
        msg.mid = self.next_mid() if mid is None else mid
        msg.token = os.urandom(4) if token is None else token
        segs = [s for s in path.split("/") if s]
        msg.opt.uri_path = (path.lstrip("/"),) if path_as_one_option else tuple(segs)
        if queries:
            msg.opt.uri_query = tuple(queries)
        if observe is not None:
            msg.opt.observe = observe
        if content_format is not None:
            msg.opt.content_format = content_format
        return msg

    def send(self, msg):
        self.sock.sendto(msg.encode(), self.server)
        return msg

    def request(self, code, path, payload=b"", **kw):
        msg = self.build(code, path, payload, **kw)
        msg.sent_at = time.monotonic()
        self.send(msg)
        return msg

    def recv(self, timeout=3.0):
        """Next message from tbsim, or None after `timeout` seconds."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, _ = self.sock.recvfrom(4096)
        except socket.timeout:
            return None
        return Received(Message.decode(data), time.monotonic(), data)

    def recv_all(self, duration):
        """Every message arriving within `duration` seconds."""
        out = []
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            r = self.recv(left)
            if r is not None:
                out.append(r)

    def recv_until(self, done, timeout=10.0, extra=0.2):
        """Messages until done(messages so far) is true (however slowly a loaded machine sends them),
        then whatever else arrives within `extra` seconds: what a window of fixed length would catch,
        without racing the clock."""
        out = []
        deadline = time.monotonic() + timeout
        while not done(out):
            r = self.recv(deadline - time.monotonic())
            if r is None:
                break
            out.append(r)
        return out + self.recv_all(extra)

    def recv_n(self, n, timeout=10.0, extra=0.2):
        """The next n messages, then whatever else arrives within `extra` seconds (see recv_until)."""
        return self.recv_until(lambda got: len(got) >= n, timeout, extra)

    def ack(self, received):
        self._empty(ACK, received.mid)

    def rst(self, received):
        self._empty(RST, received.mid)

    def _empty(self, mtype, mid):
        msg = Message(code=Code.EMPTY)
        msg.mtype = mtype
        msg.mid = mid
        self.send(msg)

    def exchange(self, code, path, payload=b"", timeout=3.0, **kw):
        """Send a request and return its response, ACKing a CON response; skips an empty ACK."""
        req = self.request(code, path, payload, **kw)
        deadline = time.monotonic() + timeout
        while True:
            r = self.recv(deadline - time.monotonic())
            if r is None:
                raise AssertionError("no response to %s %s" % (code, path))
            if r.code == Code.EMPTY:
                continue
            if r.token == req.token:
                if r.mtype == CON:
                    self.ack(r)
                return r
