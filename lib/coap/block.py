# Block1/Block2 option values (RFC 7959 §2.2): NUM << 4 | M << 3 | SZX, size = 2 ** (SZX + 4).
from coap.errors import BadResponse


def value(num, more, szx):
    return (num << 4) | (8 if more else 0) | szx


def parse(v):
    """(num, more, szx) from an option's integer value; SZX 7 is reserved on UDP (§2.2)."""
    szx = v & 7
    if szx == 7:
        raise BadResponse("block SZX 7 is reserved")
    return v >> 4, bool(v & 8), szx


def size(szx):
    return 1 << (szx + 4)


def szx_for(nbytes):
    """Largest SZX whose block size is <= nbytes (16..1024)."""
    if nbytes < 16:
        raise ValueError("block size below 16")
    s = 0
    while s < 6 and (32 << s) <= nbytes:
        s += 1
    return s
