"""Gson's lenient JSON, rewritten as the strict JSON text jsontypes parses.

ThingsBoard reads device JSON with Gson's JsonParser, whose JsonReader is lenient (Gson JsonReader.setLenient):
unquoted or 'single-quoted' names and strings, `=` or `=>` between name and value, `;` between members or
elements, comments (`//`, `#`, `/* */`), and an omitted array element read as null. The docs rely on it: their
`mosquitto_pub ... -m {"temperature":25}` reaches the server as `{temperature:25}`, and
`-m "{"attribute1": "value1", "attribute2": true}"` as `{attribute1: value1, attribute2: true}`.

An unquoted literal is a keyword when it spells true/false/null in any case, a number when it is a JSON number
(`01` is not), and a string otherwise, as Gson's peekKeyword/peekNumber decide. Numbers keep their text, so
jsontypes types them from the literal as for strict JSON.
"""

import json
import re

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>//[^\n]*|\#[^\n]*|/\*.*?\*/)
  | (?P<dq>"(?:[^"\\]|\\.)*")
  | (?P<sq>'(?:[^'\\]|\\.)*')
  | (?P<sep>=>|[{}\[\]:,;=])
  | (?P<lit>[^/\\;\#={}\[\]:,\s"']+)
""", re.S | re.X)
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")
_KEYWORDS = ("true", "false", "null")


def _single_quoted(token):
    body = token[1:-1].replace("\\'", "'")
    body = re.sub(r'(?<!\\)"', r'\\"', body)  # a bare " inside '...' must be escaped in JSON
    return '"' + body + '"'


def to_strict(text):
    """The strict JSON text of a lenient one; ValueError where Gson would fail too (an unexpected character)."""
    out = []
    arrays = []  # True for each open '[', False for each '{'
    prev = None
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError("unexpected character %r at %d" % (text[pos], pos))
        pos = m.end()
        kind, tok = m.lastgroup, m.group()
        if kind in ("ws", "comment"):
            continue
        if kind == "sq":
            tok = _single_quoted(tok)
        elif kind == "lit":
            if tok.lower() in _KEYWORDS:
                tok = tok.lower()
            elif not _NUMBER.match(tok):
                tok = json.dumps(tok, ensure_ascii=False)
        elif kind == "sep":
            tok = {"=": ":", "=>": ":", ";": ","}.get(tok, tok)
            in_array = bool(arrays) and arrays[-1]
            if in_array and ((tok == "," and prev in ("[", ",")) or (tok == "]" and prev == ",")):
                out.append("null")  # "unnecessary array separators" stand for omitted nulls
            if tok in "{[":
                arrays.append(tok == "[")
            elif tok in "}]" and arrays:
                arrays.pop()
        out.append(tok)
        prev = tok
    return "".join(out)
