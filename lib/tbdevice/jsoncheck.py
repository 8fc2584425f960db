# The JSON that tbdevice.jsonenc.plain() declines, written with care (issue 15): floats so that
# the server keeps them as doubles (float_text, see jsonenc.py), and only the values JSON can
# carry: str, int, float, bool, None, dict, list, tuple and their subclasses. Anything else
# raises ValueError naming its key, at the call that was given it: MicroPython's json would
# write an object as its repr (`{"t":<object>}`, refused by the server with 4.00) and bytes as
# a string. jsonenc loads this module only when such a value turns up, so the per-message
# path carries none of it.
import json

from tbdevice.jsonenc import _INF, _NINF, _SCALARS, SEP, plain


def check(o, key=None):
    """Raises ValueError, naming the key, when o holds a value JSON cannot carry (key:
    the key o is the value of, when it is one). A flat dict of numbers is passed by
    plain() without a call per value; subclasses of the JSON types pass as they are."""
    t = type(o)
    if t is dict:
        if key is None and plain(o):
            return
        for k in o:
            check(o[k], k)
    elif t is list or t is tuple:
        for v in o:
            check(v, key)
    elif t is not float and t not in _SCALARS and not isinstance(o, (int, float, str, dict, list, tuple)):
        what = "a value" if key is None else "the value of %r" % (key,)
        raise ValueError("%s is %s, not one of str, int, float, bool, None, dict, list" % (what, t.__name__))


def float_text(x):
    """The JSON text for a float that the server stores as a double (NaN/inf: null,
    which the server skips)."""
    if x != x or x == _INF or x == _NINF:
        return "null"
    r = repr(x)
    mant, _, exp = r.partition("e")
    frac = mant.partition(".")[2].rstrip("0")
    if len(frac) - (int(exp) if exp else 0) <= 16:
        return r
    s = ("%.16f" % x).rstrip("0")
    return s + "0" if s.endswith(".") else s


def _enc(o, out, key=None):
    t = type(o)
    if t is float:
        out.append(float_text(o))
    elif t is dict:
        out.append("{")
        first = True
        for k, v in o.items():
            if not first:
                out.append(",")
            first = False
            out.append(json.dumps(str(k)))
            out.append(":")
            _enc(v, out, k)
        out.append("}")
    elif t is list or t is tuple:
        out.append("[")
        for i, v in enumerate(o):
            if i:
                out.append(",")
            _enc(v, out, key)
        out.append("]")
    else:
        if t not in _SCALARS:
            check(o, key)  # raises ValueError naming the key, but for a subclass of a JSON type
        out.append(json.dumps(o, separators=SEP))  # SEP: a subclass of dict or list ends up here


def careful(o):
    """jsonenc.dumps() for a value plain() declined."""
    out = []
    _enc(o, out)
    return "".join(out)
