from coap import block
from coap.errors import BadResponse


def test_value_roundtrip():
    for num in (0, 1, 15, 16, 1000, 0xFFFFF):
        for more in (False, True):
            for szx in range(7):
                assert block.parse(block.value(num, more, szx)) == (num, more, szx)


def test_known_values():
    assert block.value(0, True, 6) == 0x0E
    assert block.value(1, False, 6) == 0x16
    assert block.value(2, True, 2) == 0x2A
    assert block.size(6) == 1024 and block.size(0) == 16


def test_szx_for():
    assert block.szx_for(1024) == 6
    assert block.szx_for(2000) == 6
    assert block.szx_for(512) == 5
    assert block.szx_for(100) == 2
    assert block.szx_for(16) == 0


def test_szx7_rejected():
    try:
        block.parse(0x17)
    except BadResponse:
        return
    assert False
