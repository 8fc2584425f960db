"""Protobuf for tbsim (spec §11): device-profile schemas compiled at run time with protoc (grpcio-tools) into
Google's protobuf runtime, ThingsBoard's built-in messages, and JsonFormat as ThingsBoard's Java code uses it.

- `profile_message(text)`: the class of the last top-level message of a schema (DynamicProtoUtils).
- `to_json(msg)`: JsonFormat.printer().includingDefaultValueFields(): lowerCamelCase JSON names, int64 as strings,
  doubles as Java prints them, unset `optional` and message fields left out (spec §11.1).
- `merge_json(obj, msg)`: JsonFormat.parser().ignoringUnknownFields().merge (spec §11.3), including Gson's
  getAsString, which turns a number or boolean into a string field's text but fails on an object or array.
"""

import base64
import functools
import json
import os
import tempfile

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor as F
from grpc_tools import protoc

from . import jsontypes

_HERE = os.path.dirname(os.path.abspath(__file__))
BUILTIN_DIR = os.path.join(os.path.dirname(_HERE), "proto", "thingsboard")
DEFAULT_DIR = os.path.join(os.path.dirname(_HERE), "proto", "default")
_INT64 = (F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64)


class SchemaError(ValueError):
    """A schema that protoc refuses, or one without a message."""


class ConvertError(ValueError):
    """JSON that does not fit the message (JsonFormat's InvalidProtocolBufferException)."""


def compile_files(paths, include):
    """A DescriptorPool holding the given .proto files (paths relative to include)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        rc = protoc.main(["protoc", "-I" + include, "--include_imports", "--descriptor_set_out=" + out] + list(paths))
        if rc != 0:
            raise SchemaError("protoc refused %s" % ", ".join(paths))
        with open(out, "rb") as fh:
            fds = descriptor_pb2.FileDescriptorSet.FromString(fh.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return pool, fds


@functools.lru_cache(maxsize=64)
def profile_message(text):
    """The message class a profile schema's bytes are parsed with: its last top-level message (spec §11.1)."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "schema.proto"), "w", encoding="utf-8") as fh:
            fh.write(text)
        pool, fds = compile_files(["schema.proto"], tmp)
    fd = fds.file[-1]
    if not fd.message_type:
        raise SchemaError("the schema has no message")
    name = (fd.package + "." if fd.package else "") + fd.message_type[-1].name
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


def default_schema(role):
    """The text of a default schema (spec §11.1): telemetry, attributes, rpc_request, rpc_response."""
    with open(os.path.join(DEFAULT_DIR, role + ".proto"), encoding="utf-8") as fh:
        return fh.read()


@functools.lru_cache(maxsize=1)
def _builtins():
    pool, _ = compile_files(["queue.proto", "transport.proto"], BUILTIN_DIR)
    return pool


def builtin(name):
    """A built-in message class by full name, e.g. "transport.AttributeUpdateNotificationMsg" (spec §11.2)."""
    return message_factory.GetMessageClass(_builtins().FindMessageTypeByName(name))


# ---- JsonFormat, as ThingsBoard calls it ---------------------------------------------------------
def _java_float(x):
    if x != x:
        return '"NaN"'
    if x in (float("inf"), float("-inf")):
        return '"Infinity"' if x > 0 else '"-Infinity"'
    return jsontypes.java_double(x)


def _scalar(fd, v):
    t = fd.type
    if t == F.TYPE_BOOL:
        return "true" if v else "false"
    if t in _INT64:
        return '"%d"' % v
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return _java_float(v)
    if t == F.TYPE_STRING:
        return json.dumps(v, ensure_ascii=False)
    if t == F.TYPE_BYTES:
        return '"%s"' % base64.b64encode(v).decode()
    if t == F.TYPE_ENUM:
        ev = fd.enum_type.values_by_number.get(v)
        return json.dumps(ev.name) if ev is not None else str(v)
    if t == F.TYPE_MESSAGE:
        return to_json(v)
    return str(v)


def to_json(msg):
    """Compact JSON text of a message, fields in number order, defaults included where they have no presence."""
    parts = []
    for fd in sorted(msg.DESCRIPTOR.fields, key=lambda f: f.number):
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            vfd = fd.message_type.fields_by_name["value"]
            items = getattr(msg, fd.name)
            text = "{" + ",".join(json.dumps(str(k).lower() if isinstance(k, bool) else str(k)) + ":" +
                                  _scalar(vfd, items[k]) for k in items) + "}"
        elif fd.is_repeated:
            text = "[" + ",".join(_scalar(fd, x) for x in getattr(msg, fd.name)) + "]"
        elif fd.has_presence and not msg.HasField(fd.name):
            continue
        else:
            text = _scalar(fd, getattr(msg, fd.name))
        parts.append(json.dumps(fd.json_name) + ":" + text)
    return "{" + ",".join(parts) + "}"


def _java_string(fd, v):
    # Gson's JsonElement.getAsString: primitives give their text; objects and arrays cannot.
    if isinstance(v, (dict, list)) or v is None:
        raise ConvertError("field %s: expected a string" % fd.json_name)
    if v is True or v is False:
        return "true" if v else "false"
    return str(v)


def _convert(fd, v):
    t = fd.type
    if t == F.TYPE_MESSAGE:
        if not isinstance(v, dict):
            raise ConvertError("field %s: expected an object" % fd.json_name)
        return _prepare(fd.message_type, v)
    if t == F.TYPE_STRING:
        return _java_string(fd, v)
    if isinstance(v, jsontypes.RawNumber):
        return float(v) if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT) or "." in v or "e" in v.lower() else int(v)
    return v


def _prepare(desc, obj):
    """Drop unknown fields (ignoringUnknownFields) and coerce values the Java parser accepts."""
    out = {}
    names = {}
    for fd in desc.fields:
        names[fd.json_name] = fd
        names[fd.name] = fd
    for k, v in obj.items():
        fd = names.get(k)
        if fd is None or v is None:
            continue
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            vfd = fd.message_type.fields_by_name["value"]
            if not isinstance(v, dict):
                raise ConvertError("field %s: expected an object" % fd.json_name)
            out[fd.json_name] = {mk: _convert(vfd, mv) for mk, mv in v.items()}
        elif fd.is_repeated:
            if not isinstance(v, list):
                raise ConvertError("field %s: expected an array" % fd.json_name)
            out[fd.json_name] = [_convert(fd, x) for x in v]
        else:
            out[fd.json_name] = _convert(fd, v)
    return out


def merge_json(obj, cls):
    """A message of class cls from a JSON object (spec §11.3). Raises ConvertError."""
    from google.protobuf import json_format

    msg = cls()
    try:
        json_format.ParseDict(_prepare(cls.DESCRIPTOR, obj), msg, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise ConvertError(str(exc)) from exc
    return msg
