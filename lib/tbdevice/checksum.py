# Incremental checksums for OTA images with ThingsBoard's hex conventions (spec §10.1):
# the server prints Guava's HashCode, which is big-endian digest order for MD5 and the SHA
# family but little-endian for the 32-bit CRC32 and MURMUR3_32 codes; MURMUR3_128 is h1
# then h2, each little-endian. MicroPython's hashlib has md5/sha1/sha256 on some ports
# only; what it lacks is in tbdevice.softhash, loaded only for a package that names it.
import binascii
import struct

try:
    import hashlib
except ImportError:  # a port without hashlib
    hashlib = None

ALGORITHMS = ("MD5", "SHA256", "SHA384", "SHA512", "CRC32", "MURMUR3_32", "MURMUR3_128")
_HEX_DIGITS = (32, 64, 96, 128, 8, 8, 32)  # of each algorithm's checksum, in ALGORITHMS order

_M32 = 0xFFFFFFFF


class _Crc32:
    def __init__(self):
        self.crc = 0

    def update(self, data):
        self.crc = binascii.crc32(data, self.crc)

    def digest(self):
        return struct.pack("<I", self.crc & _M32)


def new(algorithm):
    """An object with update(bytes) and digest(): the checksum's bytes in the order the
    server prints them (hexdigest()). For MD5 and the SHA family it is hashlib's own, so no
    code of this module is in use while a download feeds it (tbdevice.ota unloads it)."""
    a = algorithm.upper()
    if a == "CRC32":
        return _Crc32()
    if a in ("MD5", "SHA256", "SHA384", "SHA512"):
        name = a.lower()
        if hashlib is not None and hasattr(hashlib, name):
            return getattr(hashlib, name)()
    if a in ("MURMUR3_32", "MURMUR3_128", "SHA384", "SHA512"):
        from tbdevice import softhash

        if a == "MURMUR3_32":
            return softhash.Murmur32()
        if a == "MURMUR3_128":
            return softhash.Murmur128()
        return softhash.Sha512(384 if a == "SHA384" else 512)
    if a in ALGORITHMS:
        raise ValueError("checksum %s is not available on this port" % a)
    raise ValueError("unknown checksum algorithm %s" % algorithm)


def malformed(algorithm, expected):
    """None when `expected` can be a checksum of `algorithm` (hex of its length, any case),
    else why not."""
    a = algorithm.upper()
    if a not in ALGORITHMS:
        return "unknown checksum algorithm %s" % algorithm
    n = _HEX_DIGITS[ALGORITHMS.index(a)]
    e = expected.strip()
    if len(e) != n or any(c not in "0123456789abcdefABCDEF" for c in e):
        return "%r is not a %s checksum (%d hex digits)" % (expected, a, n)
    return None


def hexdigest(h):
    """The server's hex form of what new() made (after the last update())."""
    return binascii.hexlify(h.digest()).decode()


def matches(expected, actual):
    """Compare case-insensitively: a user-supplied checksum can be upper case (spec §10.1)."""
    return expected.strip().lower() == actual.lower()
