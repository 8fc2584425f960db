# Byte-exact CoAP vectors shared by the CPython and unix-port tests. Each entry:
# (name, hex bytes, (type, code, mid, token hex, [(option, value hex)], payload hex)).
VECTORS = [
    ("empty ACK", "60000001", (2, 0, 1, "", [], "")),
    ("ping CON", "4000abcd", (0, 0, 0xABCD, "", [], "")),
    ("RST", "70001234", (3, 0, 0x1234, "", [], "")),
    (
        "telemetry POST",
        "42021234beef"
        "b3617069" "027631" "05544f4b454e" "0974656c656d65747279"
        "ff" "7b2274223a317d",
        (0, 2, 0x1234, "beef", [(11, "617069"), (11, "7631"), (11, "544f4b454e"), (11, "74656c656d65747279")], "7b2274223a317d"),
    ),
    # Observe=0 is a zero-length option and must survive both ways (RFC 7641 §2).
    ("observe register", "410100070a" "60" "53617069", (0, 1, 7, "0a", [(6, ""), (11, "617069")], "")),
    # Uri-Query, each name=value its own option; delta 4 from Uri-Path 11.
    (
        "two queries",
        "41010001aa" "b161" "43613d31" "03623d32",
        (0, 1, 1, "aa", [(11, "61"), (15, "613d31"), (15, "623d32")], ""),
    ),
    # Block2 (23) with a 1-byte value, Size2 (28) with 2 bytes: delta 12 then 5.
    ("block2 size2", "50450002" "d10a16" "5205dc" "ff00", (1, 69, 2, "", [(23, "16"), (28, "05dc")], "00")),
    # Size1 (60): delta 60 needs the 13 extension (60 - 13 = 47 = 0x2f).
    ("size1 ext13", "40020003" "d12f" "02", (0, 2, 3, "", [(60, "02")], "")),
    # A 300-byte option value needs the 14 extension for its length (300 - 269 = 31).
    ("length ext14", "40020004" "be001f" + "78" * 300, (0, 2, 4, "", [(11, "78" * 300)], "")),
    # Option delta 2000 needs the 14 extension for the delta (2000 - 269 = 1731 = 0x06c3).
    ("delta ext14", "40020005" "e006c3", (0, 2, 5, "", [(2000, "")], "")),
    # Separate CON 2.01 response with an 8-byte token and no options (spec §3).
    ("separate CON 2.01", "48414e20" "0102030405060708", (0, 65, 0x4E20, "0102030405060708", [], "")),
]

# Datagrams that must be rejected with FormatError, never another exception.
MALFORMED = [
    ("short", ""),
    ("three bytes", "400100"),
    ("version 2", "80010001"),
    ("token length 9", "49010001" + "00" * 9),
    ("truncated token", "44010001aabb"),
    ("empty with token", "61000001aa"),
    ("marker no payload", "40010001ff"),
    ("nibble 15 delta", "40010001f0"),
    ("nibble 15 length", "400100010f"),
    ("truncated ext13", "400100011d"),
    ("truncated ext14", "40010001e0"),
    ("value past end", "4001000103aa"),
]
