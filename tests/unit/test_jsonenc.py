# ThingsBoard-safe JSON (spec §5): no float with a scale above 16, compact, NaN as null.
import json

from tbdevice.jsoncheck import float_text
from tbdevice.jsonenc import dumps


def _scale(text):
    mant, _, exp = text.lower().partition("e")
    return len(mant.partition(".")[2]) - (int(exp) if exp else 0)


def test_point_one_plus_point_two():
    s = dumps({"v": 0.1 + 0.2})
    assert s == '{"v":0.3}', s


def test_plain_values_compact():
    assert dumps({"temperature": 21.5}) == '{"temperature":21.5}'
    assert dumps([1, True, None, "x"]) == '[1,true,null,"x"]'
    assert dumps({"a": 42.0}) == '{"a":42.0}'  # stays a double on the server


def test_scales_never_above_16():
    for x in (0.1 + 0.2, 1e-7, 1.2345678901234567e-10, 0.012345678901234567, -0.3333333333333333, 1e-300, 123.456):
        t = float_text(x)
        assert _scale(t) <= 16, (x, t)
        assert abs(float(t) - x) <= 1e-16 + abs(x) * 1e-15, (x, t)


def test_nan_and_inf_are_null():
    assert dumps({"a": float("nan"), "b": float("inf")}) in ('{"a":null,"b":null}', '{"b":null,"a":null}')


def test_nested_and_escaped():
    s = dumps({"k": [{"x": 0.1 + 0.2, "s": 'q"\n'}]})
    assert json.loads(s) == {"k": [{"x": 0.3, "s": 'q"\n'}]}


# ---- values JSON cannot carry (issue 15 item 7) ----------------------------------------------
# MicroPython's json writes an object as its repr ({"t":<object>}: 4.00 at the server) and
# bytes as a string; the call raises ValueError naming the key instead.

def _refused(fn, *args):
    try:
        fn(*args)
    except ValueError as e:
        return str(e)
    assert False, "no ValueError for %r" % (args,)


class _Stream:
    def __init__(self):
        self.parts = []

    def write(self, s):
        self.parts.append(s)


def test_an_object_or_bytes_raise_value_error_naming_the_key():
    from tbdevice.codec import JsonCodec
    from tbdevice.jsoncheck import check

    c = JsonCodec()
    for values, key, typ in (({"t": object()}, "'t'", "object"), ({"b": b"ab"}, "'b'", "bytes"),
                             ({"ok": 1, "ba": bytearray(b"x")}, "'ba'", "bytearray"),
                             ({"risky": 0.1 + 0.2, "b": b"x"}, "'b'", "bytes"),  # the careful path checks too
                             ({"n": {"deep": [1, object()]}}, "'deep'", "object"),
                             ([{"ts": 1, "values": {"t": b"x"}}], "'t'", "bytes")):
        for fn in (dumps, check, c.telemetry, c.attributes):
            msg = _refused(fn, values)
            assert key in msg and typ in msg, (fn, msg)
        s = _Stream()
        msg = _refused(c.write_telemetry, s, values, 1700000000000)
        assert key in msg and s.parts == [], (msg, s.parts)  # nothing written


def test_json_values_and_their_subclasses_pass():
    from tbdevice.jsoncheck import check

    class D(dict):
        pass

    class I(int):
        pass

    v = {"i": 1, "f": 2.5, "s": "x", "b": True, "n": None, "l": [1, [2]], "t": (1, 2), "d": {"a": 0.1 + 0.2}}
    check(v)
    assert json.loads(dumps(v)) == {"i": 1, "f": 2.5, "s": "x", "b": True, "n": None, "l": [1, [2]], "t": [1, 2],
                                    "d": {"a": 0.3}}
    w = {"d": D(a=1), "i": I(3)}
    check(w)
    assert dumps(w) in ('{"d":{"a":1},"i":3}', '{"i":3,"d":{"a":1}}')  # compact, as before
