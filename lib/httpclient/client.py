# A small HTTP/1.1 client connection on asyncio streams (RFC 9112): one request at a time,
# kept alive between requests, Content-Length, chunked and read-to-close bodies, TLS with
# certificate verification, one time limit per request, bounded head and body sizes.
# The caller serialises requests (one connection per concurrent exchange: a long poll
# gets its own).
import asyncio
import errno
import socket

from httpclient import response
from httpclient.errors import BadResponse, Timeout, TlsError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_BUF = const(1024)  # one buffer per connection: the longest header line must fit
_HEAD_MAX = const(8192)  # status line and header fields together
_SAFE = b"-._~"  # unreserved besides letters and digits (RFC 3986 §2.3)


def quote(text):
    """Percent-encodes a query value (RFC 3986 §2.1)."""
    out = []
    for c in text.encode() if isinstance(text, str) else text:
        if 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in _SAFE:
            out.append(chr(c))
        else:
            out.append("%%%02X" % c)
    return "".join(out)


def resolve(host, port):
    """The server's numeric address, resolved once per (re)open (DESIGN §5)."""
    a = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    addr = a[-1]
    if isinstance(addr, tuple):  # boards: ("1.2.3.4", port)
        return addr[0]
    fam, ip = socket.sockaddr(addr)[:2]  # pyright: ignore[reportAttributeAccessIssue]  # unix port only: raw sockaddr bytes
    return socket.inet_ntop(fam, ip)  # pyright: ignore[reportAttributeAccessIssue]


def pem_to_der(pem):
    """The DER certificates in a PEM text (MicroPython's mbedTLS build takes DER only)."""
    import binascii

    out = []
    body = None
    for line in pem.split(b"\n"):
        line = line.strip()
        if line.startswith(b"-----BEGIN CERTIFICATE"):
            body = []
        elif line.startswith(b"-----END CERTIFICATE") and body is not None:
            out.append(binascii.a2b_base64(b"".join(body)))
            body = None
        elif body is not None and line:
            body.append(line)
    return out


def tls_context(ca):
    """A client TLS context that verifies the server's certificate chain against the CA
    certificates in ca (PEM, one or more, or DER); the host name is checked per connection."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    certs = pem_to_der(ca) if b"-----BEGIN" in ca else [ca]
    if not certs:
        raise ValueError("no certificate in the CA file")
    for der in certs:
        ctx.load_verify_locations(cadata=der)
    return ctx


async def _wait_closed(s):
    try:
        s.close()
        await s.wait_closed()
    except OSError:  # a socket the peer reset is closed all the same
        pass


def _closed():
    return OSError(errno.ECONNRESET)


class Connection:
    """One socket to host:port (TLS when ssl is an SSLContext). request() connects when
    needed; a kept-alive socket that the server closed meanwhile is replaced once."""

    def __init__(self, host, port, ssl=None, addr=None, bufsize=_BUF):
        self.host = host
        self.port = port
        self.ssl = ssl
        self.addr = addr  # numeric address (resolve()), else host is resolved per connect
        self.buf = bytearray(bufsize)
        self.mv = memoryview(self.buf)
        self._a = 0  # unread bytes are buf[_a:_b]
        self._b = 0
        self._s = None
        self.used = 0  # responses read on this socket
        self.connects = 0
        self.resent = 0  # requests sent again after a stale kept-alive socket
        dflt = 443 if ssl else 80
        self._host = ("Host: " + host + ("" if port == dflt else ":" + str(port)) + "\r\n").encode()

    @property
    def connected(self):
        return self._s is not None

    async def connect(self):
        self.close()
        where = self.addr or self.host
        if self.ssl:
            s, _ = await asyncio.open_connection(where, self.port, ssl=self.ssl, server_hostname=self.host)
        else:
            s, _ = await asyncio.open_connection(where, self.port)
        self._s = s
        self._a = self._b = 0
        self.used = 0
        self.connects += 1

    def close(self):
        s, self._s = self._s, None
        if s is not None:
            # MicroPython's Stream.close() does nothing: its socket (and a TLS session's buffers)
            # go only in wait_closed(), which CPython's writer has too. A task, as close() is sync.
            asyncio.create_task(_wait_closed(s))

    async def request(self, method, path, body=None, ctype=None, timeout_ms=10000, limit=4096):
        """(status, body) with body a bytearray (b"" when empty). Raises Timeout after
        timeout_ms (connect included), BadResponse, or OSError; on any of them the socket
        is closed, so the next request starts on a new one."""
        done = False
        try:
            r = await asyncio.wait_for_ms(self._exchange(method, path, body, ctype, limit), timeout_ms)
            done = True
            return r
        except asyncio.TimeoutError:
            raise Timeout("no response in %d ms" % timeout_ms)
        finally:
            if not done:  # also on cancellation: a half-read response is unusable
                self.close()

    async def _exchange(self, method, path, body, ctype, limit):
        while True:
            fresh = self._s is None
            if fresh:
                await self.connect()
            try:
                try:
                    await self._send(method, path, body, ctype)
                    line = await self._line()
                    break
                except ValueError as e:  # MicroPython's ssl: a certificate that does not verify
                    raise TlsError(str(e).strip())
            except OSError:
                self.close()
                # The server may close a kept-alive socket between requests; then the request
                # never reached it and is sent again once, on a new socket (RFC 9112 §9.3.1).
                if fresh:
                    raise
                self.resent += 1
        head = response.Head(*response.status_line(line))
        seen = len(line)
        while True:
            line = self._buffered() or await self._line()  # (a line is never empty: LF ends it)
            seen += len(line)
            if seen > _HEAD_MAX:
                raise BadResponse("response head too large")
            if len(line) <= 2 and bytes(line).strip() == b"":
                if 100 <= head.status < 200:  # interim response: the real one follows
                    head = response.Head(*response.status_line(await self._line()))
                    continue
                break
            start = self._a - len(line)  # the line is buf[start:_a]: its colon is found in place
            head.field(line, self.buf.find(b":", start, self._a) - start)
        data = b""
        if head.body_expected(method):
            n = head.framing()
            if head.chunked:
                data = await self._chunked(limit)
            elif n != response.NONE:
                if n > limit:
                    raise BadResponse("body of %d bytes, over %d" % (n, limit))
                data = await self._exact(n)
            else:
                data = await self._to_close(limit)
        self.used += 1
        if not head.keep or self._a != self._b:
            self.close()  # closing, or bytes nobody asked for
        return head.status, data

    async def _send(self, method, path, body, ctype):
        if isinstance(body, str):
            body = body.encode()
        parts = [method.encode(), b" ", path.encode() if isinstance(path, str) else path, b" HTTP/1.1\r\n", self._host]
        if ctype:
            parts.append(b"Content-Type: " + ctype + b"\r\n")
        if body is not None or method == "POST":
            parts.append(b"Content-Length: %d\r\n" % (len(body) if body else 0))
        parts.append(b"\r\n")
        if body:
            # One write for head and body: two small segments would meet Nagle's algorithm
            # and the peer's delayed ACK (about 40 ms per request), or two TLS records.
            parts.append(body)
        s = self._s
        s.write(b"".join(parts))
        await s.drain()

    async def _fill(self):
        # More bytes into the buffer, after the unread ones; EOF is a closed connection.
        if self._a == self._b:
            self._a = self._b = 0
        elif self._b == len(self.buf):
            if self._a == 0:
                raise BadResponse("header line too long")
            n = self._b - self._a
            self.buf[:n] = self.buf[self._a:self._b]
            self._a, self._b = 0, n
        while True:
            n = await self._s.readinto(self.mv[self._b:])
            if n is None:  # TLS: a record without application data yet
                continue
            if n == 0:
                raise _closed()
            self._b += n
            return

    def _buffered(self):
        # The next line (LF included) when the buffer holds all of it, as a memoryview valid
        # until the next read; else None.
        i = self.buf.find(b"\n", self._a, self._b)
        if i < 0:
            return None
        a, self._a = self._a, i + 1
        return self.mv[a:i + 1]

    async def _line(self):
        # The next line, read as needed. The header fields' loop asks _buffered() first: most
        # lines are in the buffer already, and a call of _line() makes a coroutine object.
        while True:
            line = self._buffered()
            if line is not None:
                return line
            await self._fill()

    def _take(self, n):
        # Up to n buffered bytes.
        k = min(n, self._b - self._a)
        a, self._a = self._a, self._a + k
        return self.mv[a:a + k]

    async def _exact(self, n):
        if n == 0:
            return b""
        out = bytearray(n)
        mv = memoryview(out)
        part = self._take(n)
        got = len(part)
        mv[:got] = part
        while got < n:  # straight from the socket into the body, past the buffer
            k = await self._s.readinto(mv[got:])
            if k is None:
                continue
            if k == 0:
                raise _closed()
            got += k
        return out

    async def _chunked(self, limit):
        out = bytearray()
        while True:
            n = response.chunk_size(await self._line())
            if n == 0:
                break
            if len(out) + n > limit:
                raise BadResponse("chunked body over %d bytes" % limit)
            while n:
                if self._a == self._b:
                    await self._fill()
                part = self._take(n)
                out.extend(part)
                n -= len(part)
            if bytes(await self._line()).strip():
                raise BadResponse("chunk without CRLF")
        while len(await self._line()) > 2:  # trailer fields, ignored
            pass
        return out

    async def _to_close(self, limit):
        out = bytearray()
        while True:
            out.extend(self._take(self._b - self._a))
            if len(out) > limit:
                raise BadResponse("body over %d bytes" % limit)
            try:
                await self._fill()
            except OSError:  # the close ends the body (RFC 9112 §6.3 item 8)
                return out
