# CoAP message codec (RFC 7252 §3). Pure functions and one small class: no sockets,
# no clock, so the same code and tests run on CPython and on MicroPython.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from coap.errors import FormatError

# Message types (RFC 7252 §3).
CON = const(0)
NON = const(1)
ACK = const(2)
RST = const(3)

# Method and response codes, as the byte on the wire (class << 5 | detail).
EMPTY = const(0)
GET = const(1)
POST = const(2)
PUT = const(3)
DELETE = const(4)
FETCH = const(5)
CREATED = const(65)  # 2.01
DELETED = const(66)  # 2.02
VALID = const(67)  # 2.03
CHANGED = const(68)  # 2.04
CONTENT = const(69)  # 2.05
CONTINUE = const(95)  # 2.31, RFC 7959 §2.9.1
BAD_REQUEST = const(128)  # 4.00
UNAUTHORIZED = const(129)  # 4.01
NOT_FOUND = const(132)  # 4.04
METHOD_NOT_ALLOWED = const(133)  # 4.05
REQUEST_ENTITY_INCOMPLETE = const(136)  # 4.08
REQUEST_ENTITY_TOO_LARGE = const(141)  # 4.13
INTERNAL_SERVER_ERROR = const(160)  # 5.00

# Option numbers (RFC 7252 §5.10, RFC 7641 §2, RFC 7959 §2.1 and §4).
IF_MATCH = const(1)
URI_HOST = const(3)
ETAG = const(4)
IF_NONE_MATCH = const(5)
OBSERVE = const(6)
URI_PORT = const(7)
LOCATION_PATH = const(8)
URI_PATH = const(11)
CONTENT_FORMAT = const(12)
MAX_AGE = const(14)
URI_QUERY = const(15)
ACCEPT = const(17)
LOCATION_QUERY = const(20)
BLOCK2 = const(23)
BLOCK1 = const(27)
SIZE2 = const(28)
PROXY_URI = const(35)
SIZE1 = const(60)

# Content-Formats used here (RFC 7252 §12.3).
TEXT_PLAIN = const(0)
OCTET_STREAM = const(42)
JSON = const(50)

_VERSION = const(1)
_PAYLOAD_MARKER = const(0xFF)
# Options kept per decoded message: a datagram of one-byte options would otherwise make
# about a thousand tuples (tens of KB) from one 1280-byte datagram. Responses of a
# ThingsBoard server carry a handful (spec §2-§10); 32 leaves room for any RFC 7252 peer.
MAX_OPTIONS = const(32)


def code_str(code):
    """'2.05' for 69: how codes are written in RFCs and logs."""
    d = code & 31
    return str(code >> 5) + (".0" if d < 10 else ".") + str(d)


def uint_bytes(v):
    """An unsigned option value in its shortest form: 0 is zero-length (RFC 7252 §3.2)."""
    if v < 0:
        raise ValueError("negative uint option")
    n = 0
    t = v
    while t:
        n += 1
        t >>= 8
    out = bytearray(n)
    while n:
        n -= 1
        out[n] = v & 0xFF
        v >>= 8
    return bytes(out)


def uint_value(b):
    v = 0
    for x in b:
        v = (v << 8) | x
    return v


def _opt_value(v):
    if isinstance(v, int):
        return uint_bytes(v)
    if isinstance(v, str):
        return v.encode()
    return bytes(v)


def _nibble(v):
    # Option delta/length nibble (RFC 7252 §3.1): the value, or 13/14 for a 1/2-byte extension.
    if v < 13:
        return v
    if v < 269:
        return 13
    if v < 65805:
        return 14
    raise ValueError("option too long")


def _put_ext(out, nib, v):
    if nib == 13:
        out.append(v - 13)
    elif nib == 14:
        v -= 269
        out.append(v >> 8)
        out.append(v & 0xFF)


def encode_options(opts, prev=0):
    """Encode (number, bytes) pairs, already in ascending order, to option bytes.
    `prev` lets a caller append options after a pre-encoded run ending at that number."""
    out = bytearray()
    for num, val in opts:
        d = num - prev
        if d < 0:
            raise ValueError("options out of order")
        prev = num
        ln = len(val)
        dn = _nibble(d)
        ldn = _nibble(ln)
        out.append((dn << 4) | ldn)
        _put_ext(out, dn, d)
        _put_ext(out, ldn, ln)
        out.extend(val)
    return bytes(out)


def encode_into(buf, mtype, code, mid, token, optbytes, payload):
    """Whole datagram into a preallocated buffer from pre-encoded option bytes.
    Returns its length; raises ValueError if it does not fit."""
    tkl = len(token)
    n = 4 + tkl + len(optbytes) + (len(payload) + 1 if payload else 0)
    if n > len(buf):
        raise ValueError("message larger than buffer")
    buf[0] = (_VERSION << 6) | (mtype << 4) | tkl
    buf[1] = code
    buf[2] = (mid >> 8) & 0xFF
    buf[3] = mid & 0xFF
    i = 4 + tkl
    buf[4:i] = token
    j = i + len(optbytes)
    buf[i:j] = optbytes
    if payload:
        buf[j] = _PAYLOAD_MARKER
        buf[j + 1 : n] = payload
    return n


class Message:
    """A CoAP message. Options are (number, bytes) pairs kept in wire order; adding
    keeps repeated options in the order they were added (Uri-Path segments)."""

    def __init__(self, mtype=CON, code=GET, mid=0, token=b"", payload=b""):
        self.mtype = mtype
        self.code = code
        self.mid = mid
        self.token = token
        self.options = []
        self.payload = payload

    def add(self, num, value):
        """Add an option; value is bytes, str (UTF-8) or int (shortest uint)."""
        opts = self.options
        i = len(opts)
        # Insert after the last option with a number <= num: a stable order that
        # does not depend on sort stability (MicroPython's sort is not stable).
        while i and opts[i - 1][0] > num:
            i -= 1
        opts.insert(i, (num, _opt_value(value)))
        return self

    def opt(self, num, default=None):
        for n, v in self.options:
            if n == num:
                return v
        return default

    def opts(self, num):
        return [v for n, v in self.options if n == num]

    def uint(self, num, default=None):
        v = self.opt(num)
        return default if v is None else uint_value(v)

    def path(self):
        return "/".join(v.decode() for v in self.opts(URI_PATH))

    def is_request(self):
        return 0 < self.code < 32

    def is_response(self):
        return self.code >= 64

    def encode(self):
        opts = encode_options(self.options)
        n = 4 + len(self.token) + len(opts) + (len(self.payload) + 1 if self.payload else 0)
        buf = bytearray(n)
        encode_into(buf, self.mtype, self.code, self.mid, self.token, opts, self.payload)
        return bytes(buf)

    def __repr__(self):
        return "<Message type %d %s mid=%d tok=%s opts=%r %dB>" % (
            self.mtype,
            code_str(self.code),
            self.mid,
            bytes(self.token).hex(),
            self.options,
            len(self.payload),
        )


def _ext_read(data, i, n, nib):
    # Returns (value, next index) for a delta/length nibble (RFC 7252 §3.1).
    if nib < 13:
        return nib, i
    if nib == 13:
        if i >= n:
            raise FormatError("truncated option")
        return data[i] + 13, i + 1
    if nib == 14:
        if i + 1 >= n:
            raise FormatError("truncated option")
        return ((data[i] << 8) | data[i + 1]) + 269, i + 2
    raise FormatError("reserved option nibble 15")


def decode(data, n=None):
    """Decode the first n bytes of data (bytes, bytearray or memoryview) to a Message.
    Values and payload are copied, so data may be a reused receive buffer.
    Malformed input raises FormatError (a CoapError), never another exception."""
    if n is None:
        n = len(data)
    if n < 4:
        raise FormatError("shorter than a header")
    b0 = data[0]
    if b0 >> 6 != _VERSION:
        raise FormatError("unknown version")
    tkl = b0 & 15
    if tkl > 8:
        raise FormatError("token length > 8")
    i = 4 + tkl
    if i > n:
        raise FormatError("truncated token")
    code = data[1]
    msg = Message((b0 >> 4) & 3, code, (data[2] << 8) | data[3], bytes(data[4:i]))
    if code == EMPTY and n > 4:
        raise FormatError("empty message with content")  # RFC 7252 §4.1
    num = 0
    opts = msg.options
    while i < n:
        b = data[i]
        i += 1
        if b == _PAYLOAD_MARKER:
            if i >= n:
                raise FormatError("payload marker without payload")  # §3
            msg.payload = bytes(data[i:n])
            break
        d, i = _ext_read(data, i, n, b >> 4)
        ln, i = _ext_read(data, i, n, b & 15)
        if i + ln > n:
            raise FormatError("truncated option value")
        num += d
        if len(opts) >= MAX_OPTIONS:
            raise FormatError("more than %d options" % MAX_OPTIONS)
        opts.append((num, bytes(data[i : i + ln])))
        i += ln
    return msg
