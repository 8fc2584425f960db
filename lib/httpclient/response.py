# HTTP/1.1 response framing, sans-IO (RFC 9112): the status line, the header fields the
# client acts on, and chunk-size lines. Fed one line at a time (bytes or memoryview,
# CRLF included or not); no sockets here, so the same tests run on CPython and the port.
from httpclient.errors import BadResponse

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


NONE = const(-1)  # no Content-Length: chunked, or read until the server closes
# The fields the client acts on, by the length of their names: any other name is skipped by its
# length alone, or by comparing it once it has that length.
_ACTED_ON = {10: b"connection", 12: b"content-type", 14: b"content-length", 17: b"transfer-encoding"}


def _strip(line):
    # bytes of the line without the trailing CR LF (and without surrounding spaces)
    return bytes(line).strip()


def status_line(line):
    """(status, http11) from "HTTP/1.1 200 OK" (RFC 9112 §4)."""
    s = _strip(line)
    if not s.startswith(b"HTTP/1.") or len(s) < 12 or s[12:13] not in (b"", b" "):
        raise BadResponse("bad status line")
    code = s[9:12]
    if s[8:9] != b" " or not code.isdigit():
        raise BadResponse("bad status line")
    return int(code), s[7:8] != b"0"


class Head:
    """What the header fields say about the body and the connection."""

    def __init__(self, status, http11):
        self.status = status
        self.length = NONE
        self.chunked = False
        # HTTP/1.1 keeps the connection by default, HTTP/1.0 closes it (RFC 9112 §9.3)
        self.keep = http11
        self.ctype = None

    def field(self, line, i=None):
        """One header line. i: where its colon is, when the caller has found it (Connection
        does, in its buffer); then a field this client does not act on costs no heap."""
        if i is None:
            i = bytes(line).find(b":")
        if i <= 0:
            raise BadResponse("bad header line")
        name = _ACTED_ON.get(i)
        if name is None or bytes(line[:i]).lower() != name:
            return
        value = bytes(line[i + 1:]).strip().lower()
        if name == b"content-length":
            if not value.isdigit():
                raise BadResponse("bad Content-Length")
            n = int(value)
            if self.length != NONE and self.length != n:
                raise BadResponse("conflicting Content-Length")  # RFC 9112 §6.3 item 5
            self.length = n
        elif name == b"transfer-encoding":
            # Only chunked is understood; it must be the last coding (RFC 9112 §6.3 item 4)
            if not value.endswith(b"chunked"):
                raise BadResponse("unsupported Transfer-Encoding")
            self.chunked = True
        elif name == b"connection":
            if b"close" in value:
                self.keep = False
            elif b"keep-alive" in value:
                self.keep = True
        else:
            self.ctype = value

    def body_expected(self, method):
        """False for HEAD and for 1xx, 204 and 304 (RFC 9112 §6.3 item 1)."""
        s = self.status
        return method != "HEAD" and s >= 200 and s != 204 and s != 304

    def framing(self):
        """The body's framing once the head is read: chunked wins over a length
        (RFC 9112 §6.3 item 3); without either, the body runs to the close."""
        if self.chunked:
            self.length = NONE
        elif self.length == NONE:
            self.keep = False
        return self.length


def chunk_size(line):
    """The size from a chunk-size line "1a;ext=v" (RFC 9112 §7.1)."""
    s = _strip(line)
    i = s.find(b";")
    if i >= 0:
        s = s[:i].strip()
    if not s or len(s) > 8:
        raise BadResponse("bad chunk size")
    try:
        return int(s, 16)
    except ValueError:
        raise BadResponse("bad chunk size")
