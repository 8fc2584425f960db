# JSON for ThingsBoard: compact, and never a float the server would store as a string.
# The server keeps a number written with a '.' as a double only when its BigDecimal scale
# (digits after the point, less the exponent) is <= 16 (spec §5); MicroPython writes
# 0.1 + 0.2 as 0.30000000000000004 (scale 17), which would become the STRING value.
#
# What plain() declines is written with care by tbdevice/jsoncheck.py, loaded only then; there
# a value JSON cannot carry raises ValueError naming its key:
# MicroPython's json writes any object as its repr (`{"t":<object>}`, which the server
# refuses with 4.00) and bytes as a string, where CPython's raises TypeError.
import json

SEP = (",", ":")
_INF = float("inf")
_NINF = -_INF
_SCALARS = (int, str, bool, type(None))  # what json writes as it is, most frequent first


def _risky(x):
    # |x| >= 1 has at most 17 significant digits of which at least one is before the
    # point, so only |x| < 1 can exceed scale 16; NaN and infinities are not JSON.
    # Comparisons only: no float object is made for an ordinary value.
    return (-1.0 < x < 1.0 and x != 0.0) or x != x or x == _INF or x == _NINF


def _needs_care(o):
    # True when o holds a float json would not write safely, or a value of any other type
    # than the JSON ones (bytes, an object, a subclass): jsoncheck then checks it, naming its key.
    t = type(o)
    if t is float:
        return _risky(o)
    if t is dict:
        for v in o.values():
            if _needs_care(v):
                return True
    elif t is list or t is tuple:
        for v in o:
            if _needs_care(v):
                return True
    elif t not in _SCALARS:
        return True
    return False


_type = type  # module-level aliases: one lookup each, not two (globals, then builtins)
_float = float
_CONTAINERS = (dict, list, tuple)


def plain(o):
    # True when json's own text is ThingsBoard-safe. The common case, a flat dict of
    # numbers, is checked inline: a function call per value would cost as much as
    # json.dump itself on MicroPython. A float is safe when 1 <= |x| <= the largest
    # double, or x == 0 (which also rules out NaN and the infinities). Any type but the
    # JSON ones goes the careful way too (jsoncheck), which refuses what JSON cannot carry.
    if _type(o) is dict:
        for k in o:  # not o.values(): a view object per call
            x = o[k]
            t = _type(x)
            if t is _float:
                if not (1.0 <= x <= 1.7976931348623157e308 or -1.7976931348623157e308 <= x <= -1.0 or x == 0.0):
                    return False
            elif t not in _SCALARS and (t not in _CONTAINERS or _needs_care(x)):
                return False
        return True
    return not _needs_care(o)


def dumps(o):
    """Compact ThingsBoard-safe JSON text; ValueError (naming the key) for a value JSON
    cannot carry."""
    if plain(o):
        return json.dumps(o, separators=SEP)
    from tbdevice.jsoncheck import careful  # only now: the per-message path carries none of it

    return careful(o)


def dump(o, stream):
    """dumps(o) written to a stream; allocates nothing for ordinary values."""
    if plain(o):
        json.dump(o, stream, separators=SEP)
    else:
        stream.write(dumps(o))
