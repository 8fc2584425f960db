# CoapLink.download (tbdevice/link.py): an assigned OTA package over CoAP, in chunks through
# tbdevice.otafetch or by Block2 through tbdevice.otablock2, loaded only when there is a download
# to make. The CoAP stack's own errors and link faults become tbdevice.errors here (neutral()).
from coap import message as m
from coap.errors import CoapError
from coap.route import Route
from tbdevice import otafetch
from tbdevice.errors import Timeout
from tbdevice.otastate import OtaError

_FOUND = {m.NOT_FOUND: "no package on the server (unassigned, or a URL package)",
          m.BAD_REQUEST: "the server has another package (title/version mismatch)",
          m.UNAUTHORIZED: "the server refused the token"}


def check(msg, what):
    c = msg.code
    if c == m.CONTENT:
        return
    why = _FOUND.get(c)
    if why:
        raise OtaError("%s: %s (%s)" % (what, why, m.code_str(c)))
    raise Timeout("%s: %s" % (what, m.code_str(c)), c)  # 5.xx: worth another try later


def route(kind, token, pkg, path="fw", extra=()):
    """The download route: fw/{token} or sw/{token} (spec §10.2); path="api" gives the
    seeds' api/v1/{token}/firmware (not served by ThingsBoard over CoAP, spec §10.2)."""
    if path == "api":
        p = "api/v1/%s/%s" % (token, "firmware" if kind == "fw" else "software")
    else:
        p = kind + "/" + token
    # One Uri-Query option per name=value (spec §6.1); the values need no escaping here.
    return Route(p, ("title=" + pkg["title"], "version=" + pkg["version"]) + tuple(extra))


def chunk_getter(client, route, con=True, timeout_ms=None):
    async def get(k):
        msg = await client.exchange(m.GET, route, b"", ((m.URI_QUERY, "chunk=%d" % k),), con, timeout_ms)
        check(msg, "chunk %d" % k)
        return msg.payload

    return get


async def download(link, kind, pkg, offset, data, mode, chunk_size, path, timeout_ms):
    if link.token is None:
        # Token-less X.509 over coaps: ThingsBoard's fw/{token} resource takes access tokens
        # only and ignores DTLS sessions (spec §10.2), so there is nothing to ask for.
        raise OtaError("CoAP OTA needs an access token (an X.509 device gets packages by URL only, spec §10.2)")
    cl = link.client
    size = pkg.get("size")
    try:
        if mode == "block2":
            from tbdevice import otablock2

            await otablock2.fetch(cl, route(kind, link.token, pkg, path), size, offset, data, link.con, timeout_ms)
            return
        r = route(kind, link.token, pkg, path, ("size=%d" % chunk_size,))
        await otafetch.chunks(chunk_getter(cl, r, link.con, timeout_ms), size, chunk_size, offset, data)
    except CoapError as e:
        from tbdevice.coaplink import neutral  # loaded already (CoapLink called us); not at the top, so
        # that this module's helpers import on CPython too (tests/unit/test_otaparts.py)

        raise neutral(e, cl.transport.secure)
