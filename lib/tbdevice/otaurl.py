# A URL package (spec §10.1: fw_url) fetched with a minimal streaming HTTP/1.1 GET: from an
# offset with `Range: bytes=N-` (a server that ignores it answers 200 and the bytes before
# N are skipped), Content-Length, chunked or read-to-close bodies, up to 3 redirects, TLS
# for https with the ssl.SSLContext given (tbdevice.ota: one that verifies the server against
# a CA and its host name, unless the config said otherwise). lib/httpclient holds whole bodies
# in RAM, which an image must never be, hence this small reader.
import asyncio

from tbdevice.errors import Timeout
from tbdevice.otastate import OtaError

_PIECE = 1024


def split_url(url):
    """(tls, host, port, path) of an http:// or https:// URL."""
    if url.startswith("https://"):
        tls, rest, port = True, url[8:], 443
    elif url.startswith("http://"):
        tls, rest, port = False, url[7:], 80
    else:
        raise OtaError("unsupported URL scheme: %s" % url)
    i = rest.find("/")
    hostport, path = (rest, "/") if i < 0 else (rest[:i], rest[i:])
    if hostport.startswith("["):  # [v6]:port
        j = hostport.find("]")
        host, tail = hostport[1:j], hostport[j + 1 :]
        if tail.startswith(":"):
            port = int(tail[1:])
    elif ":" in hostport:
        host, p = hostport.rsplit(":", 1)
        port = int(p)
    else:
        host = hostport
    if not host:
        raise OtaError("no host in URL %s" % url)
    return tls, host, port, path


async def _line(r, timeout_ms):
    line = await asyncio.wait_for_ms(r.readline(), timeout_ms)
    if not line:
        raise OSError(104, "connection closed in the header")
    return line.decode().strip()


async def _read(r, n, timeout_ms):
    b = await asyncio.wait_for_ms(r.read(n), timeout_ms)
    return b


async def fetch(url, offset, data, timeout_ms=10000, ssl=None, redirects=3):
    """Stream url from byte `offset` to the end into `await data(mv)`; returns the end offset."""
    for _ in range(redirects + 1):
        tls, host, port, path = split_url(url)
        kw = {}
        if tls:
            if ssl is None:  # never the port's default, which may verify nothing
                raise OtaError("GET %s: https and no TLS context to verify the server with" % url)
            kw["ssl"] = ssl  # asyncio passes host as server_hostname: the name is checked too
        try:
            r, w = await asyncio.wait_for_ms(asyncio.open_connection(host, port, **kw), timeout_ms)
        except asyncio.TimeoutError:
            raise Timeout("connect to %s:%d" % (host, port))
        try:
            req = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: tbdevice\r\n" % (path, host)
            if offset:
                req += "Range: bytes=%d-\r\n" % offset
            try:
                w.write((req + "\r\n").encode())  # the TLS handshake can happen here already
                await w.drain()  # or here
            except ValueError as e:
                # MicroPython's ssl: the certificate did not verify (mbedTLS's reason: not signed
                # by the CA, another host name, expired). Retrying will not mend it.
                raise OtaError("TLS to %s: %s" % (host, " ".join(str(e).split())))
            try:
                status = await _line(r, timeout_ms)
                parts = status.split(" ", 2)
                code = int(parts[1])
                length = None
                chunked = False
                location = None
                while True:
                    h = await _line(r, timeout_ms)
                    if not h:
                        break
                    k, _, v = h.partition(":")
                    k = k.strip().lower()
                    v = v.strip()
                    if k == "content-length":
                        length = int(v)
                    elif k == "transfer-encoding" and "chunked" in v.lower():
                        chunked = True
                    elif k == "location":
                        location = v
                if code in (301, 302, 303, 307, 308) and location:
                    url = location if "://" in location else url[: url.find("/", url.find("//") + 2)] + location
                    continue
                if code == 416 and offset:
                    return offset  # nothing left past offset
                if code not in (200, 206):
                    raise (Timeout if code >= 500 else OtaError)("GET %s: HTTP %d" % (url, code))
                skip = offset if code == 200 else 0
                pos = 0 if code == 200 else offset
                return await _body(r, chunked, length, skip, pos, data, timeout_ms)
            except asyncio.TimeoutError:
                raise Timeout("GET %s: no data" % url)
            except (ValueError, IndexError):
                raise OtaError("GET %s: malformed response" % url)
        finally:
            w.close()
            await w.wait_closed()  # MicroPython's close() does nothing: the socket closes here
    raise OtaError("GET %s: too many redirects" % url)


async def _body(r, chunked, length, skip, pos, data, timeout_ms):
    left = length
    while True:
        if chunked:
            n = int((await _line(r, timeout_ms)).split(";")[0], 16)
            if n == 0:
                return pos
            left = n
        while left is None or left > 0:
            b = await _read(r, _PIECE if left is None else min(_PIECE, left), timeout_ms)
            if not b:
                if left is None and not chunked:
                    return pos  # read to close
                raise OSError(104, "connection closed in the body")
            if left is not None:
                left -= len(b)
            if skip >= len(b):
                skip -= len(b)
                pos += len(b)
                continue
            mv = memoryview(b)[skip:]
            pos += len(b)
            skip = 0
            await data(mv)
        if not chunked:
            return pos
        await _line(r, timeout_ms)  # CRLF after each chunk
