#!/usr/bin/env python3
"""Compile .proto text (proto2/proto3 as ThingsBoard device profiles use it) into a schema module for the device.

The device never parses .proto text: it imports the plain-data module this writes (format: lib/tbdevice/protobuf.py).

    tools/protoc.py a.proto [b.proto ...] -o schema.py        every message of the files
    tools/protoc.py --profile profile.json -o myprofile.py    the four schemas of a device profile (REST JSON)
    tools/protoc.py --telemetry t.proto [--attributes a.proto] [--rpc-request q.proto] [--rpc-response r.proto] \
        -o myprofile.py

A profile module also names the message each role uses (TELEMETRY, ATTRIBUTES, RPC_REQUEST, RPC_RESPONSE): the last
top-level message of each schema, as ThingsBoard takes it (spec §11.1); a role not given gets the default schema.
Supported: scalars of every wire type, optional/required/repeated (packed and unpacked), nested messages and enums,
oneof, map<K,V>, field options packed/json_name/default. Not supported: groups, extensions (both refused).
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULTS = os.path.join(HERE, "proto", "default")
ROLES = (("telemetry", "TELEMETRY", "deviceTelemetryProtoSchema"),
         ("attributes", "ATTRIBUTES", "deviceAttributesProtoSchema"),
         ("rpc_request", "RPC_REQUEST", "deviceRpcRequestProtoSchema"),
         ("rpc_response", "RPC_RESPONSE", "deviceRpcResponseProtoSchema"))

# FieldDescriptorProto.Type numbers (group = 10 is refused); the device module uses the same.
SCALARS = {"double": 1, "float": 2, "int64": 3, "uint64": 4, "int32": 5, "fixed64": 6, "fixed32": 7, "bool": 8,
           "string": 9, "bytes": 12, "uint32": 13, "sfixed32": 15, "sfixed64": 16, "sint32": 17, "sint64": 18}
MESSAGE, ENUM = 11, 14
# Labels: implicit presence (proto3 plain), explicit presence, repeated, repeated packed, map.
IMPLICIT, OPTIONAL, REPEATED, PACKED, MAP = 0, 1, 2, 3, 4
_NOT_PACKABLE = (9, 12, MESSAGE)
_MAP_KEYS = ("int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64", "sfixed32",
             "sfixed64", "bool", "string")

_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.]))
  | (?P<id>\.?[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)
  | (?P<sym>[{}\[\]()<>=;,:])
""", re.S | re.X)


class ProtoError(ValueError):
    pass


def json_name(name):
    """protoc's ToJsonName: drop each '_' and upper-case the letter after it (lowerCamelCase)."""
    out, up = [], False
    for c in name:
        if c == "_":
            up = True
        else:
            out.append(c.upper() if up else c)
            up = False
    return "".join(out)


def tokenize(text, where):
    toks, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            raise ProtoError("%s:%d: unexpected %r" % (where, line, text[pos:pos + 10]))
        if m.lastgroup != "ws":
            toks.append((m.lastgroup, m.group(), text.count("\n", 0, pos) + 1))
        pos = m.end()
    return toks


class Parser:
    """Recursive descent over the tokens of one file; collects messages and enums by full name."""

    def __init__(self, text, where="<schema>"):
        self.where = where
        self.toks = tokenize(text, where)
        self.i = 0
        self.syntax = "proto2"
        self.package = ""
        self.messages = []   # [full name, [field dict], scope] in declaration order
        self.enums = []      # [full name, [(NAME, number)]]
        self.top = []        # full names of top-level messages

    def error(self, msg):
        line = self.toks[min(self.i, len(self.toks) - 1)][2] if self.toks else 0
        return ProtoError("%s:%d: %s" % (self.where, line, msg))

    def peek(self):
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def next(self, kind=None):
        if self.i >= len(self.toks):
            raise self.error("unexpected end of file")
        k, v, _ = self.toks[self.i]
        if kind and k != kind:
            raise self.error("expected %s, got %r" % (kind, v))
        self.i += 1
        return v

    def expect(self, value):
        v = self.next()
        if v != value:
            raise self.error("expected %r, got %r" % (value, v))

    def skip_statement(self):
        depth = 0
        while True:
            v = self.next()
            if v in "{[(" and len(v) == 1:
                depth += 1
            elif v in "}])" and len(v) == 1:
                depth -= 1
                if depth == 0 and v == "}":
                    return
            elif v == ";" and depth == 0:
                return

    def parse(self):
        if self.peek() == "syntax":
            self.next()
            self.expect("=")
            self.syntax = self.next("str")[1:-1]
            self.expect(";")
            if self.syntax not in ("proto2", "proto3"):
                raise self.error("syntax %s is not supported" % self.syntax)
        while self.peek() is not None:
            v = self.next()
            if v == ";":
                continue
            if v == "package":
                self.package = self.next("id")
                self.expect(";")
            elif v in ("import", "option"):
                self.skip_statement()  # imported files are given on the command line too
            elif v == "message":
                self.top.append(self.message(self.package))
            elif v == "enum":
                self.enum(self.package)
            elif v == "service":
                self.skip_statement()
            else:
                raise self.error("%r is not supported here" % v)
        return self

    def _full(self, scope, name):
        return scope + "." + name if scope else name

    def enum(self, scope):
        full = self._full(scope, self.next("id"))
        values = []
        self.expect("{")
        while self.peek() != "}":
            v = self.next()
            if v == ";":
                continue
            if v in ("option", "reserved"):
                self.skip_statement()
                continue
            self.expect("=")
            values.append((v, self._int(self.next("num"))))
            if self.peek() == "[":
                self.options()
            self.expect(";")
        self.next()
        if not values:
            raise self.error("enum %s has no values" % full)
        self.enums.append([full, values])

    def message(self, scope):
        full = self._full(scope, self.next("id"))
        fields = []
        entry = [full, fields, full]
        self.messages.append(entry)
        self.expect("{")
        self.body(full, fields, in_oneof=False)
        return full

    def body(self, full, fields, in_oneof):
        while True:
            v = self.peek()
            if v == "}":
                self.next()
                return
            self.next()
            if v == ";":
                continue
            if v == "message":
                self.message(full)
            elif v == "enum":
                self.enum(full)
            elif v in ("option", "reserved", "extensions"):
                self.skip_statement()
            elif v == "oneof":
                self.next("id")
                self.expect("{")
                self.body(full, fields, in_oneof=True)
            elif v in ("extend", "group"):
                raise self.error("%s is not supported" % v)
            elif v == "map":
                self.map_field(full, fields)
            else:
                label = v if v in ("optional", "required", "repeated") else None
                ftype = self.next() if label else v
                if ftype == "group":
                    raise self.error("groups are not supported")
                self.field(full, fields, label, ftype, in_oneof)

    def field(self, scope, fields, label, ftype, in_oneof):
        name = self.next("id")
        self.expect("=")
        number = self._int(self.next("num"))
        opts = self.options() if self.peek() == "[" else {}
        self.expect(";")
        if not 1 <= number <= 536870911 or 19000 <= number <= 19999:
            raise self.error("field number %d of %s is out of range" % (number, name))
        if any(f["number"] == number for f in fields):
            raise self.error("field number %d is used twice in %s" % (number, scope))
        if label == "repeated":
            packed = opts.get("packed", "true" if self.syntax == "proto3" else "false") == "true"
            kind = "repeated"
        elif label in ("optional", "required") or in_oneof or self.syntax == "proto2":
            packed, kind = False, "optional"
        else:
            packed, kind = False, "implicit"
        fields.append({"name": name, "json": opts.get("json_name", json_name(name)), "number": number,
                       "type": ftype, "scope": scope, "kind": kind, "packed": packed})

    def map_field(self, scope, fields):
        self.expect("<")
        key = self.next("id")
        self.expect(",")
        value = self.next("id")
        self.expect(">")
        if key not in _MAP_KEYS:
            raise self.error("map key type %s is not allowed" % key)
        at = len(fields)
        self.field(scope, fields, None, "", False)
        f = fields[at]
        entry = self._full(scope, f["name"][:1].upper() + json_name(f["name"])[1:] + "Entry")
        self.messages.append([entry, [
            {"name": "key", "json": "key", "number": 1, "type": key, "scope": scope, "kind": "implicit",
             "packed": False},
            {"name": "value", "json": "value", "number": 2, "type": value, "scope": scope, "kind": "implicit",
             "packed": False}], entry])
        f.update(type="." + entry, kind="map")

    def options(self):
        self.expect("[")
        opts = {}
        while True:
            name = self.next()
            if name == "(":  # a custom option: (name).sub = value
                while self.next() != ")":
                    pass
                while self.peek() != "=":
                    self.next()
            self.expect("=")
            if self.peek() == "{":
                self.skip_statement()
                value = None
            else:
                value = self.next()
            if value and value[:1] in "\"'":
                value = value[1:-1]
            opts[name] = value
            v = self.next()
            if v == "]":
                return opts
            if v != ",":
                raise self.error("expected ',' or ']' in field options")

    def _int(self, text):
        s = text.lstrip("+-")
        try:
            n = int(s, 16) if s[:2] in ("0x", "0X") else int(s, 8) if len(s) > 1 and s[0] == "0" else int(s)
        except ValueError:
            raise self.error("expected an integer, got %r" % text)
        return -n if text.startswith("-") else n


class Schema:
    """Compiled messages and enums, in device order. Several files (or roles) can be added."""

    def __init__(self):
        self.messages = []  # (full name, fields tuple)
        self.enums = []     # (full name, ((NAME, number), ...))
        self.roles = {}

    def add(self, parsers):
        """Resolve and add the messages of one or more parsed files (they may refer to each other).
        Returns the full name -> index map of this batch."""
        mindex, eindex = {}, {}
        for p in parsers:
            for e in p.enums:
                eindex[e[0]] = len(self.enums)
                self.enums.append((e[0], tuple(e[1])))
            for m in p.messages:
                if m[0] in mindex:
                    raise ProtoError("message %s is defined twice" % m[0])
                mindex[m[0]] = len(self.messages) + len(mindex)
        pending = [m for p in parsers for m in p.messages]
        for full, fields, _scope in pending:
            self.messages.append((full, tuple(self._field(f, mindex, eindex) for f in sorted(
                fields, key=lambda f: f["number"]))))
        return mindex

    def _resolve(self, name, scope, table):
        if name.startswith("."):
            return name[1:] if name[1:] in table else None
        parts = scope.split(".") if scope else []
        while True:
            cand = ".".join(parts + [name])
            if cand in table:
                return cand
            if not parts:
                return None
            parts.pop()

    def _field(self, f, mindex, eindex):
        t = f["type"]
        label = {"implicit": IMPLICIT, "optional": OPTIONAL, "map": MAP}.get(f["kind"])
        if t in SCALARS:
            code, sub = SCALARS[t], None
            if f["kind"] == "repeated":
                label = PACKED if f["packed"] and code not in _NOT_PACKABLE else REPEATED
        else:
            full = self._resolve(t, f["scope"], mindex)
            if full is not None:
                code, sub = MESSAGE, mindex[full]
                if label == IMPLICIT:
                    label = OPTIONAL  # a message field always has presence
            else:
                full = self._resolve(t, f["scope"], eindex)
                if full is None:
                    raise ProtoError("%s.%s: unknown type %s" % (f["scope"], f["name"], t))
                code, sub = ENUM, eindex[full]
            if f["kind"] == "repeated":
                label = PACKED if f["packed"] and code == ENUM else REPEATED
        out = (f["number"], f["json"], code, label, sub)
        return out + (f["name"],) if f["name"] != f["json"] else out


def parse_files(paths):
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            out.append(Parser(fh.read(), os.path.basename(path)).parse())
    return out


def add_role(schema, role_const, text, where):
    p = Parser(text, where).parse()
    if not p.top:
        raise ProtoError("%s: the schema has no top-level message" % where)
    index = schema.add([p])
    schema.roles[role_const] = index[p.top[-1]]  # the last top-level message (DynamicProtoUtils)


def profile_schema(texts):
    """texts: {role: proto text or None} for telemetry/attributes/rpc_request/rpc_response."""
    schema = Schema()
    for role, const, _ in ROLES:
        text = texts.get(role)
        where = role + ".proto"
        if text is None:
            with open(os.path.join(DEFAULTS, where), encoding="utf-8") as fh:
                text = fh.read()
        add_role(schema, const, text, where)
    return schema


def profile_texts(profile):
    """The four schema texts of a device profile (ThingsBoard REST JSON), None where not set."""
    if "profileData" in profile:
        profile = profile["profileData"]
    try:
        t = profile["transportConfiguration"]["coapDeviceTypeConfiguration"]["transportPayloadTypeConfiguration"]
    except (KeyError, TypeError):
        raise ProtoError("the profile has no COAP transportPayloadTypeConfiguration")
    if t.get("transportPayloadType") != "PROTOBUF":
        raise ProtoError("the profile's payload type is %s, not PROTOBUF" % t.get("transportPayloadType"))
    return {role: t.get(key) or None for role, _, key in ROLES}


def render(schema, sources):
    """The module text: plain tuples (constants in .mpy and frozen code), nothing run at import."""
    lines = ["# Generated by tools/protoc.py from %s; edit the .proto and run it again." % ", ".join(sources),
             "# Format: lib/tbdevice/protobuf.py. Fields: (number, json name, type, label, sub[, proto name]).",
             "M = ("]
    for name, fields in schema.messages:
        lines.append("    (%r, (" % name)
        lines.extend("        %r," % (f,) for f in fields)
        lines.append("    )),")
    lines.append(")")
    lines.append("E = (")
    for name, values in schema.enums:
        lines.append("    (%r, %r)," % (name, values))
    lines.append(")")
    for _, const, _ in ROLES:
        if const in schema.roles:
            lines.append("%s = %d" % (const, schema.roles[const]))
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="protoc.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help=".proto files compiled together (every message)")
    ap.add_argument("--profile", help="a device profile's JSON (REST GET /api/deviceProfile/{id}, or exported)")
    for role, _, _ in ROLES:
        ap.add_argument("--" + role.replace("_", "-"), metavar="FILE", help="the profile's %s schema" % role)
    ap.add_argument("-o", "--output", required=True, help="the module to write (e.g. lib/myprofile.py)")
    a = ap.parse_args(argv)
    roles = {r: getattr(a, r) for r, _, _ in ROLES}
    try:
        if a.files and (a.profile or any(roles.values())):
            raise ProtoError("give either .proto files or a profile, not both")
        if a.files:
            schema = Schema()
            schema.add(parse_files(a.files))
            sources = [os.path.basename(p) for p in a.files]
        else:
            if a.profile:
                with open(a.profile, encoding="utf-8") as fh:
                    texts = profile_texts(json.load(fh))
                sources = [os.path.basename(a.profile)]
            else:
                texts, sources = {}, []
            for role, path in roles.items():
                if path:
                    with open(path, encoding="utf-8") as fh:
                        texts[role] = fh.read()
                    sources.append(os.path.basename(path))
            schema = profile_schema(texts)
            sources = sources or ["the default schemas"]
    except (OSError, ValueError) as e:
        print("protoc.py: %s" % e, file=sys.stderr)
        return 1
    with open(a.output, "w", encoding="utf-8") as fh:
        fh.write(render(schema, sources))
    return 0


if __name__ == "__main__":
    sys.exit(main())
