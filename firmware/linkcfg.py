# The link and the payload codec a config names (DESIGN §3), for the app (firmware/app.py) and for
# the boot that only makes an update (firmware/otaload.py: update_boot), which must not load the app.


def make_link(cfg, log):
    """The link cfg["transport"] names: CoAP over UDP, HTTP(S) (spec §15), or MQTT(S)
    (docs/wire-mqtt.md), where tls.ca is the CA file that the server's certificate must
    chain to. The MQTT modules load only here, for an MQTT config."""
    t = cfg["transport"]
    if t in ("mqtt", "mqtts"):
        from tbdevice.mqttconn import link_from_config

        return link_from_config(cfg, log)
    if t in ("http", "https"):
        from httpclient.client import tls_context
        from tbdevice.httplink import HttpLink

        tls = None
        if t == "https":
            with open(cfg["tls"]["ca"], "rb") as f:
                tls = tls_context(f.read())
        return HttpLink(cfg["host"], cfg["port"], tls=tls, log=log, **(cfg.get("http") or {}))
    from tbdevice.coaplink import CoapLink

    coap = dict(cfg.get("coap") or {})
    con = coap.pop("con", True)
    if t == "coaps":
        # DTLS 1.2 with X.509 (spec §12). The handshake runs in every link.open(), so the
        # supervisor's re-open redoes it.
        from coap.dtls import BLOCK_SIZE, DtlsTransport

        tls = cfg.get("tls") or {}
        coap["transport"] = DtlsTransport(cfg["host"], cfg["port"], tls.get("ca"), tls.get("cert"), tls.get("key"),
                                          tls.get("verify", True))
        coap.setdefault("block_size", BLOCK_SIZE)
    return CoapLink(cfg["host"], cfg["port"], None, con, None, log, **coap)


def make_codec(cfg):
    """The payload type the device profile requires (spec §4): None for JSON, or protobuf
    by the profile schema module cfg["proto"] (tools/protoc.py; the defaults of spec §11.1
    when absent)."""
    if cfg["payload"] != "protobuf":
        return None
    from tbdevice.protocodec import ProtoCodec

    return ProtoCodec(cfg.get("proto"))
