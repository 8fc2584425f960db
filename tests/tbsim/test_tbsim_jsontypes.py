"""ThingsBoard value typing (spec §5) and Gson-style output, in process."""

import pytest
from hypothesis import given, strategies as st

from tbsim import jsontypes as jt


@pytest.mark.parametrize("literal,expected", [
    ("42", ("LONG", "42")),
    ("42.0", ("DOUBLE", "42.0")),
    ("0.30000000000000004", ("STRING", "0.30000000000000004")),  # scale 17 > 16
    ("0.1234567890123456", ("DOUBLE", "0.1234567890123456")),    # scale 16
    ("1e3", ("LONG", "1000")),
    ("1.0e3", ("LONG", "1000")),
    ("1.5e-20", ("STRING", "0.000000000000000000015")),
    ("9223372036854775807", ("LONG", "9223372036854775807")),
    ("9223372036854775808", ("STRING", "9223372036854775808")),
    ("-3", ("LONG", "-3")),
])
def test_number_literals(literal, expected):
    assert jt.type_value(jt.loads("[%s]" % literal)[0]) == expected


@pytest.mark.parametrize("text,expected", [
    ("123", ("LONG", "123")), ("-7", ("LONG", "-7")), ("1.5", ("DOUBLE", "1.5")), (".5", ("DOUBLE", "0.5")),
    ("5.", ("STRING", "5.")), ("1e3", ("STRING", "1e3")), (" 1", ("STRING", " 1")), ("", ("STRING", "")),
    ("abc", ("STRING", "abc")),
])
def test_numeric_strings_are_cast(text, expected):
    assert jt.type_value(text) == expected


def test_objects_nulls_and_bad_payloads():
    assert jt.parse_attributes(b'{"a":null,"j":{"x":[1,2.50]},"b":false}') == [
        ("j", "JSON", '{"x":[1,2.50]}'), ("b", "BOOLEAN", "false")]
    for bad in (b"", b"  ", b"42", b"[1]", b'"s"', b"{bad", b'{"a":NaN}', b"\xff"):
        with pytest.raises(jt.BadPayload):
            jt.parse_telemetry(bad, 0)
    with pytest.raises(jt.BadPayload):
        jt.parse_telemetry(b'{"ts":"x","values":{"a":1}}', 0)
    assert jt.parse_telemetry(b'{"ts":5,"values":{"a":1},"extra":2}', 9) == [(5, [("a", "LONG", "1")])]
    assert jt.parse_telemetry(b'{"ts":5}', 9) == [(9, [("ts", "LONG", "5")])]


@pytest.mark.parametrize("value,text", [
    (42.0, "42.0"), (1e10, "1.0E10"), (1.5e-5, "1.5E-5"), (0.001, "0.001"), (1234567.0, "1234567.0"),
    (12345678.0, "1.2345678E7"), (-3.25, "-3.25"), (0.0, "0.0"), (1e7, "1.0E7"), (9.999e-4, "9.999E-4"),
])
def test_java_double_to_string(value, text):
    assert jt.java_double(value) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_java_double_round_trips(value):
    assert float(jt.java_double(value).replace("E", "e")) == value
