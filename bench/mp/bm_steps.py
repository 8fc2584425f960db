# Single steps of sending one telemetry message, without I/O.
import json

from bm_common import HOST, TOKEN, VALUES, measure, payload_bytes


def run(case, metric, n, warm):
    if case == "dumps":
        from tbdevice.jsonenc import dumps

        def loop(k):
            for _ in range(k):
                dumps(VALUES)

    elif case == "codec":
        from tbdevice.codec import JsonCodec

        codec = JsonCodec()

        def loop(k):
            for _ in range(k):
                codec.telemetry(VALUES)

    elif case == "jsondumps":
        sep = (",", ":")

        def loop(k):
            for _ in range(k):
                json.dumps(VALUES, separators=sep)

    elif case == "encode":
        from coap import message as m
        from coap.client import Route

        route = Route("api/v1/" + TOKEN + "/telemetry")
        buf = bytearray(1280)
        body = payload_bytes()
        tok = b"\xa1\xb2\xc3\xd4"

        def loop(k):
            for i in range(k):
                m.encode_into(buf, m.CON, m.POST, i & 0xFFFF, tok, route.opts, body)

    elif case == "decode":
        from coap import message as m

        rsp = bytearray(1280)
        rsp[:8] = b"\x64\x41\x12\x34\xa1\xb2\xc3\xd4"

        def loop(k):
            for _ in range(k):
                m.decode(rsp, 8)

    elif case == "token":
        from coap.client import Client

        c = Client(HOST, 5683)

        def loop(k):
            for _ in range(k):
                c.new_token()

    elif case == "exobj":
        from coap.exchange import Exchange

        tok = b"\xa1\xb2\xc3\xd4"

        def loop(k):
            for _ in range(k):
                Exchange(tok)

    elif case == "rxack":
        # The receive path of coap.client for one piggybacked ACK 2.01 answering a pending
        # request (Client._read_one: match by Message ID and token, wake), from a transport
        # that hands over the same datagram each time: what our code allocates per ACK.
        # (MicroPython's own recv() allocates the datagram's bytes object on top: see the
        # transport layer.)
        from coap.client import Client
        from coap.exchange import Exchange

        rsp = b"\x64\x41\x12\x34\x0a\x1b\x2c\x3d"

        class _Once:
            sock = None

            def recv(self, maxlen):
                return rsp

        c = Client(HOST, 5683, transport=_Once())
        tok = 0x0A1B2C3D
        ex = Exchange(tok)
        ex.light = True

        def loop(k):
            for _ in range(k):
                c._by_mid[0x1234] = ex
                c._by_token[tok] = ex
                ex.code = 0
                ex.acked = False
                c._read_one()
            if k and ex.code != 0x41:
                raise SystemExit("rxack: the ACK was not matched")

    else:
        raise SystemExit("unknown case " + case)
    res = {}
    measure(loop, metric, n, warm, res)
    return res
