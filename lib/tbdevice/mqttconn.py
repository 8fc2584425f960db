# One TCP (or TLS) stream of MQTT packets for tbdevice.mqttlink and tbdevice.mqttprov: the socket,
# the receive buffer, and whole packets out of it (tbdevice.mqttcodec decodes them).
import asyncio
import errno
import select
import socket

try:
    from micropython import const
except ImportError:  # CPython (type checks)

    def const(x):
        return x


from tbdevice import mqttcodec as mc

_ECONNRESET = const(104)
_ENOTCONN = const(107)
_EPROTO = const(71)
_BUF = const(1088)  # a 1024-byte OTA chunk with its topic and header in one receive
_BIG = const(4352)  # a larger packet gets a buffer of its own up to this (codec.MAX_BYTES and topic)
_STEP_MS = const(10)  # how often a connection under way is checked


class Wire:
    """One TCP (or TLS) stream of MQTT packets and the buffer they are read into."""

    def __init__(self, bufsize=_BUF):
        self.buf = bytearray(bufsize)
        self.mv = memoryview(self.buf)
        self.st = None
        self.sock = None
        self.a = 0  # unread bytes are buf[a:b]
        self.b = 0
        self.too_big = 0  # packets skipped: larger than _BIG
        # What take() found: type, first byte, and the body in pbuf[i:end] (pbuf: buf, or a
        # big packet's own buffer, held until taken)
        self.t = self.first = self.i = self.end = 0
        self.pbuf = self.buf
        self.held = None
        self.poll = None  # select.poll with the socket registered for reading (the inline wait)
        self.pending = False  # bytes wait in the stream's buffer for the flusher
        self.apart = False  # a packet above the buffer is being read straight from the socket
        self.flusher = None
        self.error = None

    async def dial(self, host, port, tls, hostname):
        """Connect (TLS when tls is an SSLContext), without blocking the event loop; what
        asyncio.open_connection does, with Nagle off: a PUBACK of ours followed by a PUBLISH
        would otherwise wait for the server's delayed ACK (40 ms on Linux) before the PUBLISH
        leaves. The TLS handshake runs in the first write (flush())."""
        self.close()
        self.a = self.b = 0
        self.held = None
        self.apart = False
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]  # once per connection (DESIGN §5)
        s = socket.socket(ai[0], socket.SOCK_STREAM)
        self.sock = s
        try:
            s.setsockopt(getattr(socket, "IPPROTO_TCP", 6), getattr(socket, "TCP_NODELAY", 1), 1)
        except OSError:
            pass  # a port without the option sends with Nagle's algorithm: slower, not wrong
        s.setblocking(False)
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.errno != errno.EINPROGRESS:
                raise
        p = select.poll()
        p.register(s, select.POLLOUT)
        while not p.poll(0):  # connected (or refused: the first write says so)
            await asyncio.sleep_ms(_STEP_MS)
        p.unregister(s)
        if tls:
            try:
                s = self.sock = tls.wrap_socket(s, server_hostname=hostname, do_handshake_on_connect=False)
            except ValueError as e:
                raise OSError(_EPROTO, "mqtts: TLS: %s" % e)
            s.setblocking(False)
        p.register(s, select.POLLIN)
        self.poll = p
        self.st = asyncio.StreamReader(s)  # MicroPython's Stream, reader and writer in one
        self.pending = False

    def close(self):
        s, self.sock = self.sock, None
        self.st = self.poll = None
        if s is not None:
            s.close()

    def write(self, data):
        """One packet, at once as far as the socket takes it (one write per packet: several
        small segments would meet Nagle and delayed ACKs); the rest waits in the stream's
        buffer, which a task drains, and later packets go behind it."""
        st = self.st
        if st is None:
            raise OSError(_ENOTCONN, "mqtt: not connected")
        if not self.pending:
            try:
                n = self.sock.write(data)
            except ValueError as e:  # TLS
                raise OSError(_EPROTO, "mqtts: TLS: %s" % e)
            if n is None:  # would block (or the TLS handshake is under way)
                n = 0
            if n == len(data):
                return
            data = data[n:]
            self.pending = True
            self.flusher = asyncio.create_task(self._flush(st))
        st.write(data)

    async def _flush(self, st):
        try:
            await st.drain()
        except (OSError, ValueError) as e:
            if st is self.st:  # a broken connection: closed, so that the receive path says so
                self.close()
                self.error = e
            return
        if st is self.st:
            self.pending = False

    async def flush(self):
        """Until everything written so far has gone to the socket; OSError when it cannot."""
        if self.pending:
            await self.flusher
        if self.st is None:
            raise OSError(_ECONNRESET, "mqtt: %s" % (self.error or "not connected"))

    def take(self):
        """The next packet when all of it is in: its type, with pbuf[i:end] its body and first
        its first byte; else 0 (more() reads on). Nothing is consumed before the packet is
        whole, so a cancelled read (pause()) loses nothing. No allocation on this path."""
        if self.held is not None:
            self.pbuf, self.held = self.held, None
            return self.t
        f = mc.frame(self.buf, self.a, self.b)
        if f < 0:
            return 0
        rl = f >> 3
        i = self.a + (f & 7)
        if i + rl > self.b:
            return 0
        self.first = self.buf[self.a]
        self.t = mc.kind(self.first, rl)
        self.pbuf = self.buf
        self.i = i
        self.end = self.a = i + rl
        return self.t

    def read_now(self):
        """What the socket holds now, without waiting, into the buffer behind the unread bytes
        (moved to its front first when the next packet would not fit behind them): False when
        nothing came, or when the next packet is above the buffer (more() reads that one)."""
        f = mc.frame(self.buf, self.a, self.b)
        size = len(self.buf)
        if self.apart or (f >= 0 and (f >> 3) + (f & 7) > size):
            return False  # the receive task reads that packet apart, straight from the socket
        if self.a == self.b:
            self.a = self.b = 0
        elif self.b == size or (f >= 0 and self.a + (f >> 3) + (f & 7) > size):
            n = self.b - self.a
            self.mv[:n] = self.mv[self.a:self.b]
            self.a, self.b = 0, n
        try:
            n = self.sock.readinto(self.mv[self.b:])
        except ValueError as e:  # TLS
            raise OSError(_EPROTO, "mqtts: TLS: %s" % e)
        if n is None:  # nothing yet (TLS: a record without application data yet)
            return False
        if n == 0:
            raise OSError(_ECONNRESET, "mqtt: the server closed the connection")
        self.b += n
        return True

    async def more(self):
        """Read what the next packet needs, waiting until the socket is readable; a packet above
        the buffer is read into a buffer of its own up to _BIG (take() returns it), or skipped.
        The bytes are read after the wait, not during it: the link's inline wait may have taken
        them meanwhile."""
        f = mc.frame(self.buf, self.a, self.b)
        if f >= 0 and (f >> 3) + (f & 7) > len(self.buf):
            self.apart = True
            try:
                if f >> 3 <= _BIG:
                    await self._big(f >> 3, f & 7)
                else:
                    await self._skip((f >> 3) + (f & 7))
            finally:
                self.apart = False
            return
        st = self.st
        while not self.read_now():
            if st is None or st is not self.st:
                raise OSError(_ECONNRESET, "mqtt: connection closed")
            await st.read(0)  # until readable; reads nothing (py/stream.c makes no call for 0 bytes)

    async def packet(self):
        """The next packet as (buf, type, first byte, body start, body end), the body in
        buf[start:end] until the next call. Malformed for what 3.1.1 forbids."""
        while True:
            t = self.take()
            if t:
                return self.pbuf, t, self.first, self.i, self.end
            await self.more()

    async def _big(self, rl, hl):
        # A packet above the buffer (a big attribute answer or RPC): a buffer of its own.
        first = self.buf[self.a]
        t = mc.kind(first, rl)
        out = bytearray(rl)
        start = self.a + hl
        have = min(self.b - start, rl)
        out[:have] = self.mv[start:start + have]
        self.a = start + have
        mv = memoryview(out)
        while have < rl:
            n = await self.st.readinto(mv[have:])
            if n == 0:
                raise OSError(_ECONNRESET, "mqtt: the server closed the connection")
            if n:
                have += n
        self.held, self.t, self.first, self.i, self.end = out, t, first, 0, rl

    async def _skip(self, n):
        # Larger than the device takes: read past it (counted), the connection goes on.
        self.too_big += 1
        while True:
            k = min(n, self.b - self.a)
            self.a += k
            n -= k
            if not n:
                return
            if self.a == self.b:
                self.a = self.b = 0
            got = await self.st.readinto(self.mv[self.b:])
            if got == 0:
                raise OSError(_ECONNRESET, "mqtt: the server closed the connection")
            if got:
                self.b += got


def der(data):
    """DER bytes from PEM (the first block) or DER: MicroPython's mbedTLS takes DER only."""
    if not data.lstrip().startswith(b"-----BEGIN"):
        return data
    import binascii

    body = []
    inside = False
    for line in data.split(b"\n"):
        line = line.strip()
        if line.startswith(b"-----BEGIN"):
            inside = True
        elif line.startswith(b"-----END"):
            return binascii.a2b_base64(b"".join(body))
        elif inside and line:
            body.append(line)
    raise ValueError("PEM block without an END line")


def tls_context(ca, cert=None, key=None):
    """A client TLS context that verifies the server against the CA certificate `ca` (PEM or DER
    bytes); cert and key: the device's X.509 client certificate, its credentials (wire-mqtt §2.2).
    The server's host name is checked per connection."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cert is not None:
        ctx.load_cert_chain(der(cert), der(key))
    ctx.load_verify_locations(cadata=der(ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def link_from_config(cfg, log):
    """The MqttLink of a validated config (firmware/config.py): transport mqtt or mqtts, the
    token (or the mqtt section's MQTT_BASIC credentials, or tls.cert for X.509) and tuning."""
    from tbdevice.mqttlink import MqttLink

    tls = None
    t = cfg.get("tls") or {}
    if cfg["transport"] == "mqtts":
        files = []
        for k in ("ca", "cert", "key"):
            if t.get(k):
                with open(t[k], "rb") as f:
                    files.append(f.read())
            else:
                files.append(None)
        tls = tls_context(*files)
    return MqttLink(cfg["host"], cfg["port"], cfg.get("token"), tls, log=log, x509=bool(tls and t.get("cert")),
                    **(cfg.get("mqtt") or {}))
