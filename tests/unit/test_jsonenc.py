# ThingsBoard-safe JSON (spec §5): no float with a scale above 16, compact, NaN as null.
import json

from tbdevice.jsonenc import dumps, float_text


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
