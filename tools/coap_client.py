# tools/coap-client: the project's CoAP stack as a command-line client on the unix port.
# Flags follow libcoap's coap-client where they overlap; unlike libcoap it exits
# non-zero when the request fails (a timeout, a reset or a 4.xx/5.xx answer).
import asyncio
import sys

from coap import message as m
from coap import block
from coap.client import Client, Route
from coap.errors import CoapError
from coap.observe import Observation

USAGE = """usage: coap-client [-m get|post|put|delete|fetch] [-e payload] [-f file] [-s seconds]
                   [-b blocksize] [-N] [-t content-format] [-A accept] [-B seconds]
                   [-c cert -j key -C ca] [-v] [-h] URI"""
HELP = """
Sends one request (or, with -s, observes) and prints each response payload on its own line on
stdout; the response code goes to stderr ("2.04 Changed") when the request changed something
(post, put, delete), when there is no payload, and on failure (then the exit status is 1).

  -m METHOD      get (default), post, put, delete, fetch
  -e TEXT        the request payload           -f FILE   the payload from a file
  -s SECONDS     observe for that long (RFC 7641), one line per notification
  -b SIZE        block size for Block1/Block2 (16-1024; libcoap's "num,size" is taken too)
  -N             NON instead of CON            -B SECONDS  give up after that long (90)
  -t FORMAT      Content-Format number         -A FORMAT   Accept number (50: JSON)
  -c CERT -j KEY -C CA   DTLS 1.2 with X.509 for coaps:// URIs (PEM or DER)
  -v             print the whole response to stderr
  -h             this help

  tools/coap-client -m post -e '{"x":1}' coap://127.0.0.1/api/v1/TOKEN/telemetry"""
_METHODS = {"get": m.GET, "post": m.POST, "put": m.PUT, "delete": m.DELETE, "fetch": m.FETCH}
# RFC 7252 §12.1.2 (and RFC 7959, RFC 8132): the names that follow the code in what is printed
_NAMES = {65: "Created", 66: "Deleted", 67: "Valid", 68: "Changed", 69: "Content", 95: "Continue",
          128: "Bad Request", 129: "Unauthorized", 130: "Bad Option", 131: "Forbidden", 132: "Not Found",
          133: "Method Not Allowed", 134: "Not Acceptable", 136: "Request Entity Incomplete", 137: "Conflict",
          140: "Precondition Failed", 141: "Request Entity Too Large", 143: "Unsupported Content-Format",
          150: "Unprocessable Entity", 157: "Too Many Requests", 160: "Internal Server Error",
          161: "Not Implemented", 162: "Bad Gateway", 163: "Service Unavailable", 164: "Gateway Timeout",
          165: "Proxying Not Supported"}


def code_text(code):
    name = _NAMES.get(code)
    return m.code_str(code) + (" " + name if name else "")


def _unquote(s):
    if "%" not in s:
        return s
    out = bytearray()
    i = 0
    b = s.encode()
    while i < len(b):
        if b[i] == 37 and i + 2 < len(b) + 0 and i + 2 <= len(b) - 1:
            out.append(int(b[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(b[i])
            i += 1
    return bytes(out).decode()


def parse_uri(uri):
    """(scheme, host, port, [segments], [queries]) from coap[s]://host[:port]/path?query."""
    if "://" not in uri:
        raise ValueError("URI needs a scheme: coap://host/path")
    scheme, rest = uri.split("://", 1)
    if scheme not in ("coap", "coaps"):
        raise ValueError("unsupported scheme " + scheme)
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    hostport, _, path = rest.partition("/")
    port = 5684 if scheme == "coaps" else 5683
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        if tail.startswith(":"):
            port = int(tail[1:])
    elif ":" in hostport:
        host, p = hostport.rsplit(":", 1)
        port = int(p)
    else:
        host = hostport
    segs = [_unquote(s) for s in path.split("/") if s]
    qs = [_unquote(q) for q in query.split("&") if q]
    return scheme, host, port, segs, qs


def parse_args(argv):
    o = {"m": "get", "e": None, "f": None, "s": 0, "b": 0, "N": False, "t": None, "A": None, "B": 90, "v": False}
    tls = {}
    i = 0
    uri = None
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            return None
        if a in ("-N", "-v"):
            o[a[1]] = True
        elif a in ("-m", "-e", "-f", "-s", "-b", "-t", "-A", "-B", "-c", "-j", "-C"):
            i += 1
            if i >= len(argv):
                raise ValueError("option %s needs a value" % a)
            if a in ("-c", "-j", "-C"):
                tls[{"-c": "cert", "-j": "key", "-C": "ca"}[a]] = argv[i]
            else:
                o[a[1]] = argv[i]
        elif a.startswith("-"):
            raise ValueError("unknown option " + a)
        else:
            uri = a
        i += 1
    if uri is None:
        raise ValueError("no URI")
    if o["m"] not in _METHODS:
        raise ValueError("unknown method " + o["m"])
    o["b"] = int(str(o["b"]).split(",")[-1])  # libcoap also accepts "num,size"
    o["s"] = int(o["s"])
    o["B"] = int(o["B"])
    return o, tls, uri


def _out(data):
    w = getattr(sys.stdout, "buffer", sys.stdout)
    w.write(bytes(data) + b"\n")


async def run(o, tls, uri):
    scheme, host, port, segs, qs = parse_uri(uri)
    transport = None
    if scheme == "coaps":
        from coap.dtls import DtlsTransport

        transport = DtlsTransport(host, port, **tls)
    cl = Client(host, port, timeout_ms=o["B"] * 1000, transport=transport)
    if transport is not None:
        from coap.dtls import BLOCK_SIZE

        cl.block_size = BLOCK_SIZE  # keep each DTLS message within 1024 bytes (spec §12); -b overrides
    if o["b"]:
        cl.block_size = block.size(block.szx_for(o["b"]))
    payload = b""
    if o["e"] is not None:
        payload = o["e"].encode()
    elif o["f"] is not None:
        with open(o["f"], "rb") as f:
            payload = f.read()
    opts = []
    if o["t"] is not None:
        opts.append((m.CONTENT_FORMAT, int(o["t"])))
    if o["A"] is not None:
        opts.append((m.ACCEPT, int(o["A"])))
    code = _METHODS[o["m"]]
    if o["b"] and code == m.GET:
        opts.append((m.BLOCK2, block.value(0, False, block.szx_for(o["b"]))))  # early negotiation (RFC 7959 §2.4)
    route = Route(segs, qs)
    await cl.connect()
    try:
        if o["s"]:
            ok = [True]

            def show(msg, initial=False):
                if msg.code >> 5 != 2:
                    ok[0] = False
                    sys.stderr.write("coap-client: %s\n" % code_text(msg.code))
                _out(msg.payload)

            obs = Observation(cl, route, show, opts, not o["N"])
            await obs.register()
            if not obs.active:
                sys.stderr.write("coap-client: observation not accepted\n")
                return 0 if ok[0] else 1
            await asyncio.sleep(o["s"])
            if obs.active:
                await obs.cancel()
            return 0 if ok[0] else 1
        r = await cl.request(code, route, payload, opts, not o["N"])
        if o["v"]:
            sys.stderr.write("%r\n" % r)
        if r.code >> 5 != 2:
            sys.stderr.write("coap-client: %s\n" % code_text(r.code))
            if r.payload:
                _out(r.payload)
            return 1
        if code not in (m.GET, m.FETCH) or not r.payload:
            sys.stderr.write("%s\n" % code_text(r.code))  # e.g. "2.04 Changed": the request was taken
        if r.payload:
            _out(r.payload)
        return 0
    finally:
        await cl.close()


def main(argv):
    try:
        parsed = parse_args(argv)
    except ValueError as e:
        sys.stderr.write("coap-client: %s\n%s\n" % (e, USAGE))
        return 2
    if parsed is None:  # -h
        sys.stdout.write(USAGE + "\n" + HELP + "\n")
        return 0
    o, tls, uri = parsed
    try:
        return asyncio.run(run(o, tls, uri))
    except (CoapError, OSError, ValueError) as e:
        sys.stderr.write("coap-client: %s: %s\n" % (type(e).__name__, e))
        return 1


def _argv():
    # tools/coap-client passes the arguments NUL-separated in a file (see there).
    import os

    path = os.getenv("COAP_CLIENT_ARGS")
    if not path:
        return sys.argv[1:]
    with open(path, "rb") as f:
        data = f.read()
    return [a.decode() for a in data.split(b"\0")[:-1]]


sys.exit(main(_argv()))
