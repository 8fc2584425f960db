# CoAP over DTLS 1.2 (RFC 7252 §9) with X.509, through MicroPython's ssl module
# (PROTOCOL_DTLS_CLIENT; no PSK API there). The server certificate is verified against
# `ca` unless verify=False; `cert`/`key` add the client certificate (mutual auth, which
# ThingsBoard's token-less X.509 routes need, spec §12).
import binascii
import socket
import ssl
from time import ticks_add, ticks_diff, ticks_ms

from micropython import const

from coap.transport import UdpTransport

# The handshake runs without blocking the event loop: the socket is non-blocking and each
# write() during it is one step of mbedTLS's handshake (this port's ssl has no do_handshake();
# a write of nothing makes no call), which returns nothing until the handshake is over and then
# sends the datagram. The endpoint steps it every 20 ms with a CoAP ping as that datagram, which
# goes out on the new session (mbedTLS's own timer retransmits lost flights). A silent server
# fails the attempt after _HANDSHAKE_MS, and the reconnect loop tries again after its back-off.
_HANDSHAKE_MS = const(5000)
_EACCES = const(13)
_ETIMEDOUT = const(110)
# ThingsBoard's DTLS connector takes at most 1024 bytes of plaintext per record (Scandium
# max fragment length, spec §12): larger messages must go block-wise (Block1, 512-byte
# blocks leave room for header, token and options).
MAX_MESSAGE = 1024
BLOCK_SIZE = 512


def der(data):
    """DER bytes from PEM or DER: this port's mbedTLS takes DER only (a PEM certificate
    or key is 'invalid'). For PEM, the first block is used."""
    if not data.lstrip().startswith(b"-----BEGIN"):
        return data
    lines = data.split(b"\n")
    i = 0
    while not lines[i].startswith(b"-----BEGIN"):
        i += 1
    body = []
    for line in lines[i + 1 :]:
        if line.startswith(b"-----END"):
            return binascii.a2b_base64(b"".join(body))
        body.append(line.strip())
    raise ValueError("PEM block without an END line")


def _read(path_or_bytes):
    if path_or_bytes is None:
        return None
    if not isinstance(path_or_bytes, (bytes, bytearray)):
        with open(path_or_bytes, "rb") as f:
            path_or_bytes = f.read()
    return der(bytes(path_or_bytes))


class DtlsTransport(UdpTransport):
    # A server that lost the session (restarted, or evicted it) drops our records without a
    # word: links treat an unacknowledged request as a link fault and handshake again.
    secure = True

    def __init__(self, host, port=5684, ca=None, cert=None, key=None, verify=True, server_hostname=None):
        super().__init__(host, port)
        self.ca = _read(ca)
        self.cert = _read(cert)
        self.key = _read(key)
        self.verify = verify
        if verify and self.ca is None:
            # Verified by default: no CA means no server identity, which only an explicit
            # verify=False may accept (for tests against a throw-away server).
            raise ValueError("coaps: a CA certificate is needed to verify the server (or verify=False)")
        if (self.cert is None) != (self.key is None):
            raise ValueError("coaps: a client certificate needs its key (and a key its certificate)")
        self.server_hostname = server_hostname or host

    def _context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_DTLS_CLIENT)
        if self.cert is not None:
            ctx.load_cert_chain(self.cert, self.key)
        if self.verify:
            ctx.load_verify_locations(cadata=self.ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def open(self):
        # Resolve once, connect the UDP socket and wrap it; handshake() then drives the handshake.
        self.close()
        ctx = self._context()
        ai = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)[0]
        raw = socket.socket(ai[0], socket.SOCK_DGRAM)
        try:
            raw.connect(ai[-1])
            raw.setblocking(False)
            self.sock = ctx.wrap_socket(raw, server_hostname=self.server_hostname, do_handshake_on_connect=False)
        except OSError:
            raw.close()
            raise
        self._shaken = False
        self._until = ticks_add(ticks_ms(), _HANDSHAKE_MS)
        # recv() (UdpTransport's, without the peek) reads one record per call (DESIGN §7)

    def handshake(self, first):
        """One step of the handshake; True once it is over and `first` went out. A failed
        handshake is an OSError like any other link fault."""
        if self._shaken:
            return True
        try:
            self._shaken = bool(self.sock.write(first))
        except ValueError as e:
            # This port reports a failed certificate check as ValueError ("The certificate is
            # not correctly signed by the trusted CA"): refused, and a link fault like any other,
            # so the supervisor retries with back-off (the server may be fixed).
            self.close()
            raise OSError(_EACCES, "coaps: handshake refused: " + str(e).strip())
        except OSError:
            self.close()
            raise
        if not self._shaken and ticks_diff(ticks_ms(), self._until) > 0:
            self.close()
            raise OSError(_ETIMEDOUT, "coaps: no handshake within %d ms" % _HANDSHAKE_MS)
        return self._shaken

    def send(self, data, n=-1):
        if (len(data) if n < 0 else n) > MAX_MESSAGE:
            raise ValueError("coaps: a message over %d bytes (use a smaller block size)" % MAX_MESSAGE)
        UdpTransport.send(self, data, n)
