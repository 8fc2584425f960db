# The checksums against independent implementations: hashlib, zlib.crc32 and mmh3, with
# Guava's output byte order (little-endian for the 32-bit codes, h1|h2 for MURMUR3_128).
import hashlib
import zlib

import mmh3
from hypothesis import given, settings
from hypothesis import strategies as st

from tbdevice import checksum, softhash


def oracle(alg, data):
    if alg == "CRC32":
        return zlib.crc32(data).to_bytes(4, "little").hex()
    if alg == "MURMUR3_32":
        return mmh3.hash(data, signed=False).to_bytes(4, "little").hex()
    if alg == "MURMUR3_128":
        return mmh3.hash_bytes(data).hex()
    return hashlib.new(alg.lower(), data).hexdigest()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(checksum.ALGORITHMS), st.binary(max_size=600), st.lists(st.integers(1, 200), max_size=6))
def test_against_oracles_in_random_pieces(alg, data, cuts):
    h = checksum.new(alg)
    i = 0
    for c in cuts:
        h.update(data[i:i + c])
        i += c
    h.update(data[i:])
    assert checksum.hexdigest(h) == oracle(alg, data)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=400))
def test_pure_sha512_family(data):
    for bits in (384, 512):
        h = softhash.Sha512(bits)
        h.update(data)
        assert checksum.hexdigest(h) == hashlib.new("sha%d" % bits, data).hexdigest()
