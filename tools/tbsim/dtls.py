"""CoAP over DTLS 1.2 (spec §12) for tbsim: python-mbedtls (Mbed TLS 2.28) as the DTLS engine on sans-IO
buffers, one session per peer on one UDP socket, and the same CoAP endpoint above it as on the plain port.

What it does as ThingsBoard's Scandium connector does:
- the server authenticates with an X.509 certificate (here from the test CA of tls.py); no PSK;
- client authentication WANTED: a certificate is requested, none is required, and a presented one is not
  checked against any CA (the CertificateRequest names no issuers); the handshake still proves that the
  client holds its key (CertificateVerify);
- at the end of a full handshake the client certificate is looked up by the SHA3-256 hash of its base64 DER
  (`cert_hash`) among X509_CERTIFICATE device credentials; a match binds the session to that device, an
  unknown certificate does not fail the handshake (token-less requests then get 4.01);
- AEAD suites only (GCM, CCM, CCM_8: CBC is excluded with DTLS_RECOMMENDED_CIPHER_SUITES_ONLY);
- at most 1024 bytes of plaintext per record (max fragment length 1024): a larger record is dropped.

Peers are handed to the CoAP endpoint as ``addr + ("dtls",)``: the endpoint, its exchanges, retransmissions and
observe relations work unchanged, and `send` of such a peer goes through its session.
"""

import base64
import hashlib

from mbedtls import pk, tls, x509
from mbedtls.exceptions import TLSError

from .tls import ensure

MAX_PLAINTEXT = 1024
MAX_SESSIONS = 256
DTLS = "dtls"
_CIPHERS = ("TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256", "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384",
            "TLS-ECDHE-ECDSA-WITH-AES-128-CCM", "TLS-ECDHE-ECDSA-WITH-AES-256-CCM",
            "TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8", "TLS-ECDHE-ECDSA-WITH-AES-256-CCM-8")


def cert_hash(der):
    """ThingsBoard's credentials id of an X.509 certificate: SHA3-256 (hex) of its base64 DER (spec §12)."""
    return hashlib.sha3_256(base64.b64encode(der)).hexdigest()


def pem_to_der(pem):
    """The DER of the first certificate in a PEM text (or of a bare base64 body, as ThingsBoard stores it)."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    if "-----BEGIN" in text:
        text = text.split("-----BEGIN", 1)[1].split("-----", 1)[1].split("-----END", 1)[0]
    return base64.b64decode("".join(text.split()))


def is_dtls(peer):
    return bool(peer) and peer[-1] == DTLS


def _client_hello(data):
    # A DTLS record of type handshake (22), epoch 0, carrying a ClientHello (1): a new handshake from this
    # address (RFC 6347 §4.2.8: a client that lost its state starts again from the same port).
    return len(data) > 13 and data[0] == 22 and data[3] == 0 and data[4] == 0 and data[13] == 1


class _Session:
    def __init__(self, buf):
        self.buf = buf
        self.ready = False
        self.cert = None      # the client certificate's DER, when one was presented
        self.device_id = None  # the device its X.509 credentials belong to


class DtlsServer:
    """The DTLS side of one UDP socket. `endpoint` is a coapserver.CoapEndpoint (its datagram_received gets the
    plaintext); `store` finds X.509 credentials; `log` is tbsim's Log."""

    def __init__(self, endpoint, store, log, tls_dir):
        self.endpoint = endpoint
        self.store = store
        self.log = log
        self.paths = ensure(tls_dir)
        chain = ([x509.CRT.from_file(self.paths["cert"])], pk.ECC.from_file(self.paths["key"]))
        # validate_certificates=False: the server asks for a client certificate but does not require one nor
        # check it against a CA (ThingsBoard's WANTED mode); credentials decide what it is worth.
        conf = tls.DTLSConfiguration(certificate_chain=chain, validate_certificates=False, ciphers=_CIPHERS,
                                     lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
                                     highest_supported_version=tls.DTLSVersion.DTLSv1_2)
        self.context = tls.ServerContext(conf)
        self.transport = None
        self.sessions = {}  # addr -> _Session, oldest first

    # ---- asyncio.DatagramProtocol
    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None

    def error_received(self, exc):
        self.log.event(None, "dtls socket error: %s" % exc)

    def datagram_received(self, data, addr):
        s = self.sessions.get(addr)
        if s is None or (s.ready and _client_hello(data)):
            if not _client_hello(data):
                return  # a record of no session we know (e.g. after close_notify): dropped
            s = self._new(addr)
        try:
            s.buf.receive_from_network(data)
        except TLSError:  # the buffer refused the datagram (full)
            return
        if not s.ready:
            self._handshake(s, addr)
            return
        while True:
            try:
                text = s.buf.read(4096)
            except tls.WantReadError:
                break
            except TLSError as exc:  # a record that does not decrypt is discarded (RFC 6347 §4.1.2.7)
                self.log.event(addr, "dtls record dropped (%s)" % type(exc).__name__)
                break
            if not text:
                break
            if len(text) > MAX_PLAINTEXT:
                self.log.event(addr, "dtls record of %d bytes dropped: over the %d-byte plaintext limit"
                               % (len(text), MAX_PLAINTEXT))
                continue
            self.endpoint.datagram_received(text, addr + (DTLS,))
        self._flush(s, addr)
        if data[0] == 21:  # an alert record once established: close_notify or fatal, the session ends either way
            self._drop(addr, "alert from the client")

    # ---- sessions
    def _new(self, addr):
        self.sessions.pop(addr, None)
        while len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        buf = self.context.wrap_buffers()
        buf.setcookieparam(("%s:%d" % addr[:2]).encode())  # HelloVerifyRequest cookie bound to the address
        s = _Session(buf)
        self.sessions[addr] = s
        return s

    def _drop(self, addr, why):
        if self.sessions.pop(addr, None) is not None:
            self.log.event(addr, "dtls session ended: %s" % why)

    def _handshake(self, s, addr):
        while s.buf._handshake_state is not tls.HandshakeStep.HANDSHAKE_OVER:
            try:
                s.buf.do_handshake()
            except tls.WantReadError:
                self._flush(s, addr)
                return
            except tls.WantWriteError:
                self._flush(s, addr)
            except tls.HelloVerifyRequest:
                # Cookie sent (RFC 6347 §4.2.1); the ClientHello that returns it starts a fresh session.
                self._flush(s, addr)
                self.sessions.pop(addr, None)
                return
            except TLSError as exc:
                self._flush(s, addr)  # the alert, if any
                self.sessions.pop(addr, None)
                self.log.event(addr, "dtls handshake failed: %s" % (exc,))
                return
        self._flush(s, addr)
        s.ready = True
        self._bind(s, addr)

    def _bind(self, s, addr):
        try:
            der = s.buf.getpeercert(binary_form=True)
        except TLSError:
            der = None
        s.cert = der or None
        cipher = s.buf.cipher()
        suite = cipher[0] if isinstance(cipher, tuple) else cipher
        if s.cert is None:
            who = "no client certificate"
        else:
            device = self.store.device_by_x509(cert_hash(s.cert))
            if device is None:
                who = "unknown client certificate %s..." % cert_hash(s.cert)[:12]
            else:
                s.device_id = device["id"]
                who = "X.509 device %s" % device["name"]
        self.log.event(addr, "dtls handshake done (%s), %s" % (suite, who))

    def device(self, peer):
        """The device a DTLS peer's certificate is bound to, or None (spec §12)."""
        s = self.sessions.get(peer[:-1]) if is_dtls(peer) else None
        if s is None or s.device_id is None:
            return None
        return self.store.device(s.device_id)

    # ---- sending (CoapEndpoint.send_raw for a DTLS peer)
    def send(self, data, peer):
        addr = peer[:-1]
        s = self.sessions.get(addr)
        if s is None or not s.ready:
            return
        try:
            s.buf.write(data)
        except TLSError as exc:
            self.log.event(addr, "dtls write failed: %s" % (exc,))
            return
        self._flush(s, addr)

    def _flush(self, s, addr):
        while self.transport is not None:
            out = s.buf.peek_outgoing(65536)
            if not out:
                return
            self.transport.sendto(out, addr)
            s.buf.consume_outgoing(len(out))
