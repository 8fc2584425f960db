# CoapLink.download (tbdevice/link.py): an assigned OTA package over CoAP through
# tbdevice.otafetch (chunks) or tbdevice.otablock2, loaded only when there is a download to make.
from coap.errors import CoapError
from tbdevice import otafetch
from tbdevice.coaplink import neutral
from tbdevice.otastate import OtaError


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

            route = otafetch.coap_route(kind, link.token, pkg, path)
            await otablock2.fetch(cl, route, size, offset, data, link.con, timeout_ms)
            return
        route = otafetch.coap_route(kind, link.token, pkg, path, ("size=%d" % chunk_size,))
        get = otafetch.coap_chunk_getter(cl, route, link.con, timeout_ms)
        await otafetch.chunks(get, size, chunk_size, offset, data)
    except CoapError as e:
        raise neutral(e, cl.transport.secure)
