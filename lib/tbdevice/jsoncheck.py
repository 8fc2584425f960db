# Which values JSON can carry (issue 15): str, int, float, bool, None, dict, list, tuple
# and their subclasses. Anything else raises ValueError naming its key, at the call that
# was given it: MicroPython's json would write an object as its repr (`{"t":<object>}`,
# refused by the server with 4.00) and bytes as a string. jsonenc loads this module only
# when a value of another type turns up, so the per-message path carries none of it.
from tbdevice.jsonenc import _SCALARS, plain


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
