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

USAGE = """usage: coap-client [-m get|post|put|delete] [-e payload] [-f file] [-s seconds]
                   [-b blocksize] [-N] [-t content-format] [-A accept] [-B seconds]
                   [-c cert -j key -C ca] [-v] URI"""
_METHODS = {"get": m.GET, "post": m.POST, "put": m.PUT, "delete": m.DELETE, "fetch": m.FETCH}


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
                    sys.stderr.write("coap-client: %s\n" % m.code_str(msg.code))
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
            sys.stderr.write("coap-client: %s\n" % m.code_str(r.code))
            if r.payload:
                _out(r.payload)
            return 1
        if r.payload:
            _out(r.payload)
        return 0
    finally:
        await cl.close()


def main(argv):
    try:
        o, tls, uri = parse_args(argv)
    except ValueError as e:
        sys.stderr.write("coap-client: %s\n%s\n" % (e, USAGE))
        return 2
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
