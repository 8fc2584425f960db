# The checksums MicroPython's hashlib lacks, in pure Python, for tbdevice.checksum (which
# imports this module only when a package names one of them: it is most of the checksum
# code, and ThingsBoard's default, SHA256, needs none of it): MurmurHash3 x86_32 and x64_128
# (Guava's murmur3_32_fixed and murmur3_128, seed 0) and SHA-384/512 (FIPS 180-4) for ports
# whose hashlib has no sha512. Fed block by block, never the whole image.
import struct

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


class _Tail:
    # Buffers a partial block between update() calls; subclasses eat whole blocks.
    def __init__(self, size):
        self.size = size
        self.tail = b""
        self.length = 0

    def update(self, data):
        self.length += len(data)
        if self.tail:
            need = self.size - len(self.tail)
            self.tail += bytes(data[:need])
            data = memoryview(data)[need:]
            if len(self.tail) < self.size:
                return
            self._blocks(self.tail, self.size)
            self.tail = b""
        n = len(data) - len(data) % self.size
        if n:
            self._blocks(data, n)
        self.tail = bytes(data[n:])


class Murmur32(_Tail):
    # MurmurHash3 x86_32, seed 0 (Guava Hashing.murmur3_32_fixed()).
    def __init__(self):
        super().__init__(4)
        self.h = 0

    def _k(self, k):
        k = (k * 0xCC9E2D51) & _M32
        k = ((k << 15) | (k >> 17)) & _M32
        return (k * 0x1B873593) & _M32

    def _blocks(self, data, n):
        h = self.h
        for i in range(0, n, 4):
            h ^= self._k(data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24)
            h = ((h << 13) | (h >> 19)) & _M32
            h = (h * 5 + 0xE6546B64) & _M32
        self.h = h

    def digest(self):
        h = self.h
        t = self.tail
        if t:
            k = 0
            for i in range(len(t) - 1, -1, -1):
                k = (k << 8) | t[i]
            h ^= self._k(k)
        h ^= self.length & _M32
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & _M32
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & _M32
        h ^= h >> 16
        return struct.pack("<I", h)


def _rotl64(x, r):
    return ((x << r) | (x >> (64 - r))) & _M64


def _fmix64(k):
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    return k ^ (k >> 33)


_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F


class Murmur128(_Tail):
    # MurmurHash3 x64_128, seed 0 (Guava Hashing.murmur3_128()).
    def __init__(self):
        super().__init__(16)
        self.h1 = 0
        self.h2 = 0

    def _blocks(self, data, n):
        h1, h2 = self.h1, self.h2
        for i in range(0, n, 16):
            k1, k2 = struct.unpack_from("<QQ", data, i)
            k1 = (_rotl64((k1 * _C1) & _M64, 31) * _C2) & _M64
            h1 ^= k1
            h1 = (_rotl64(h1, 27) + h2) & _M64
            h1 = (h1 * 5 + 0x52DCE729) & _M64
            k2 = (_rotl64((k2 * _C2) & _M64, 33) * _C1) & _M64
            h2 ^= k2
            h2 = (_rotl64(h2, 31) + h1) & _M64
            h2 = (h2 * 5 + 0x38495AB5) & _M64
        self.h1, self.h2 = h1, h2

    def digest(self):
        h1, h2 = self.h1, self.h2
        t = self.tail
        if t:
            k1 = k2 = 0
            for i in range(min(len(t), 8) - 1, -1, -1):
                k1 = (k1 << 8) | t[i]
            for i in range(len(t) - 1, 7, -1):
                k2 = (k2 << 8) | t[i]
            if len(t) > 8:
                h2 ^= (_rotl64((k2 * _C2) & _M64, 33) * _C1) & _M64
            h1 ^= (_rotl64((k1 * _C1) & _M64, 31) * _C2) & _M64
        n = self.length
        h1 ^= n
        h2 ^= n
        h1 = (h1 + h2) & _M64
        h2 = (h2 + h1) & _M64
        h1 = _fmix64(h1)
        h2 = _fmix64(h2)
        h1 = (h1 + h2) & _M64
        h2 = (h2 + h1) & _M64
        return struct.pack("<QQ", h1, h2)


# SHA-384/512 (FIPS 180-4) for ports whose hashlib lacks them.
_K512 = None


def _k512():
    global _K512
    if _K512 is None:
        # The first 64 bits of the fractional parts of the cube roots of the first 80
        # primes, computed once with integer arithmetic (no table to mistype).
        primes = []
        n = 2
        while len(primes) < 80:
            if all(n % p for p in primes):
                primes.append(n)
            n += 1
        _K512 = [_frac_root(p, 3) for p in primes]
    return _K512


def _iroot(x, k):
    # Largest r with r ** k <= x (Newton's method on integers).
    r = 1 << ((x.bit_length() + k - 1) // k) if hasattr(x, "bit_length") else _iroot_slow_start(x, k)
    while True:
        s = ((k - 1) * r + x // r ** (k - 1)) // k
        if s >= r:
            break
        r = s
    while r ** k > x:
        r -= 1
    return r


def _iroot_slow_start(x, k):
    r = 1
    while r ** k <= x:
        r <<= 1
    return r


def _frac_root(p, k):
    return _iroot(p << (64 * k), k) & _M64


_IV512 = None


def _iv(bits):
    # Initial hash values: fractional parts of the square roots of the first 8 primes
    # (SHA-512) or of the 9th-16th primes (SHA-384), FIPS 180-4 §5.3.
    primes = (2, 3, 5, 7, 11, 13, 17, 19) if bits == 512 else (23, 29, 31, 37, 41, 43, 47, 53)
    return [_frac_root(p, 2) for p in primes]


class Sha512(_Tail):
    def __init__(self, bits=512):
        super().__init__(128)
        self.bits = bits
        self.h = _iv(bits)
        self.k = _k512()

    def _blocks(self, data, n):
        k = self.k
        for off in range(0, n, 128):
            w = list(struct.unpack_from(">16Q", data, off))
            for t in range(16, 80):
                x, y = w[t - 15], w[t - 2]
                s0 = ((x >> 1) | (x << 63)) ^ ((x >> 8) | (x << 56)) ^ (x >> 7)
                s1 = ((y >> 19) | (y << 45)) ^ ((y >> 61) | (y << 3)) ^ (y >> 6)
                w.append((w[t - 16] + (s0 & _M64) + w[t - 7] + (s1 & _M64)) & _M64)
            a, b, c, d, e, f, g, hh = self.h
            for t in range(80):
                s1 = ((e >> 14) | (e << 50)) ^ ((e >> 18) | (e << 46)) ^ ((e >> 41) | (e << 23))
                ch = (e & f) ^ (~e & g)
                t1 = (hh + (s1 & _M64) + (ch & _M64) + k[t] + w[t]) & _M64
                s0 = ((a >> 28) | (a << 36)) ^ ((a >> 34) | (a << 30)) ^ ((a >> 39) | (a << 25))
                t2 = ((s0 & _M64) + ((a & b) ^ (a & c) ^ (b & c))) & _M64
                hh, g, f, e, d, c, b, a = g, f, e, (d + t1) & _M64, c, b, a, (t1 + t2) & _M64
            self.h = [(x + y) & _M64 for x, y in zip(self.h, (a, b, c, d, e, f, g, hh))]

    def digest(self):
        saved = (self.h[:], self.tail, self.length)
        n = self.length
        pad = b"\x80" + b"\x00" * ((111 - n) % 128) + struct.pack(">QQ", n >> 61, (n << 3) & _M64)
        self.update(pad)
        out = b"".join(struct.pack(">Q", x) for x in self.h)
        self.h, self.tail, self.length = saved
        return out[: self.bits // 8]
