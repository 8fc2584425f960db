# OTA checksums in ThingsBoard's hex form (spec §10.1), fed in uneven pieces; the vectors
# come from hashlib, zlib and mmh3 (see test_checksum_oracle_host.py) and Guava's byte order.
from tbdevice import checksum, softhash

DATA = bytes(range(256)) * 5 + b"tail-bytes-123"
VECTORS = {
    "MD5": "b05a36df510cf43965b66e255a3dec88",
    "SHA256": "93ca289f0d7952f2db4c78f9ff4825a2acbbc650a524515c66d014f73174f322",
    "SHA384": "8d6ec338ee7e3e6a3605c81fe105399273220e37e21e5a111fe871aefa427a8a288861d2428f6f06e3f4a88980195588",
    "SHA512": "4a106115208fd01b326854ed7768698178fbfe2b0f2ffd3d3c7bf0431e7cc418"
    "c8d51ba75ced4bbd38fa7e2f584fdb72274b37d49579bcc168103787cc2a94ff",
    "CRC32": "8b49d611",
    "MURMUR3_32": "bb38fbe4",
    "MURMUR3_128": "f97514b16a5fe03877d687e7ea88ac4a",
}


def _digest(alg, data, step):
    h = checksum.new(alg)
    for i in range(0, len(data), step):
        h.update(data[i : i + step])
    return checksum.hexdigest(h)


def test_vectors_in_pieces():
    for alg, want in VECTORS.items():
        for step in (1, 7, 37, 128, 4096):
            got = _digest(alg, DATA, step)
            assert got == want, (alg, step, got)


def test_crc32_little_endian_like_guava():
    # CRC32 of "123456789" is 0xcbf43926; Guava (and so ThingsBoard) writes 2639f4cb.
    assert _digest("CRC32", b"123456789", 4) == "2639f4cb"


def test_empty_inputs():
    assert _digest("MURMUR3_32", b"", 1) == "00000000"
    assert _digest("MURMUR3_128", b"", 1) == "00000000000000000000000000000000"
    assert _digest("SHA256", b"", 1) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert _digest("SHA512", b"", 1).startswith("cf83e1357eefb8bd")


def test_pure_sha512_family_matches():
    # the fallback written here, forced even where hashlib has it
    for bits, alg in ((512, "SHA512"), (384, "SHA384")):
        h = softhash.Sha512(bits)
        h.update(DATA[:100])
        h.update(DATA[100:])
        assert checksum.hexdigest(h) == VECTORS[alg]


def test_matches_ignores_case_and_unknown_algorithm_is_an_error():
    assert checksum.matches("B05A36DF510CF43965B66E255A3DEC88 ", VECTORS["MD5"])
    assert not checksum.matches("00", VECTORS["MD5"])
    try:
        checksum.new("SHA3")
    except ValueError:
        return
    assert False
