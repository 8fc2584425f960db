# What a link is: the one transport a Device talks through, CoAP (tbdevice.coaplink.CoapLink)
# or HTTP(S) (tbdevice.httplink.HttpLink). Device, the Downlink, the Supervisor, OTA and the
# app use a link only through what is listed here, so none of them knows which one runs:
#
#   token, set_token(t)    the access token in every route; None: the token-less routes of an
#                          X.509 (coaps) device
#   basic                  with token None: True when the credentials are MQTT_BASIC (client
#                          id / user name / password), False for an X.509 certificate
#   host, port             the server's address, as configured (for messages)
#   codec                  set by the Device: what post() writes telemetry and attributes with
#   await open()           open the transport (DNS, socket, DTLS or TLS handshake); OSError
#                          when that fails
#   drop()                 forget the transport after a fault; open() makes a new one
#   await close()          stop the downlink, close the transport
#   post(op, body, arg)    an uplink answered by a code only (TELEMETRY, ATTRIBUTES, RPC_REPLY,
#                          CLAIM; arg: the telemetry's ts or the reply's id): None when it was
#                          answered with success at once, else an awaitable for the rest
#   await request(op, body, query, timeout_ms, rid)   one operation; the answer's payload
#   await download(kind, pkg, offset, data, mode, chunk_size, path, timeout_ms)
#                          an assigned OTA package from byte `offset` on, each piece handed to
#                          `await data(memoryview)`: chunks (both links) or Block2 (CoAP)
#   start_downlink(put, silence_ms)   shared-attribute updates and server-side RPC, each
#                          handed to put(kind, payload, initial) (ATTRIBUTE_UPDATE, RPC_REQUEST)
#   await keep_downlink(renew)   register what needs it (all of it when renew); called by the
#                          Supervisor. None when done, or the wait before the next try is
#                          due (backoff), or the error the server gave
#   await stop_downlink()
#   subscribed             both downlink channels are live
#   heard()                ticks_ms() when the server was last heard from (the receive path
#                          writes it), or None when the link cannot tell (HTTP)
#   await probe(ms)        True when the server answered a probe (CoAP ping) within ms
#   pause(), resume()      stop / restart the link's receive task, for callers that run the
#                          event loop per call (BlockingDevice)
#   retransmissions, stats()   counters for diagnostics ({name: number})
#
# Errors the application sees: tbdevice.errors (the server's codes, Timeout for no answer in
# time) and OSError for link faults, which the Device handles itself (Supervisor).
import random

try:
    from micropython import const
except ImportError:  # CPython (type checks)

    def const(x):
        return x


# Operations.
TELEMETRY = const(0)
ATTRIBUTES = const(1)
ATTRIBUTES_GET = const(2)
RPC_CALL = const(3)
RPC_REPLY = const(4)
CLAIM = const(5)
PROVISION = const(6)
NAMES = ("telemetry", "attributes", "attribute request", "rpc", "rpc reply", "claim", "provision")

# What the downlink hands to put().
ATTRIBUTE_UPDATE = const(0)
RPC_REQUEST = const(1)


def encoded(codec, op, body, arg):
    """The payload of an uplink for post(): telemetry and attributes hold values the codec
    encodes (arg: the telemetry's ts); the others are the payload already."""
    if op == TELEMETRY:
        return codec.telemetry(body, arg)
    if op == ATTRIBUTES:
        return codec.attributes(body)
    return body


def backoff(fails, first_ms=500, max_ms=60000):
    """The wait before the next try after `fails` (>= 1) failures in a row: first_ms doubling
    up to max_ms, jittered over its upper half so that devices cut off together do not come
    back together. Every retry loop of the device uses it."""
    d = min(first_ms << min(max(fails, 1) - 1, 16), max_ms)
    return d // 2 + random.getrandbits(16) % (d // 2 + 1)
