"""A test CA and a server certificate for tbsim's HTTPS port (made once per directory, then reused).

`python -m tbsim.tls DIR` writes DIR/ca.pem (give it to devices: config `tls.ca`), ca.key, server.pem and
server.key; `python -m tbsim.tls DIR NAME` also a client certificate DIR/NAME.pem + NAME.key from the same CA
(a device's X.509 credentials for coaps; any certificate will do, tbsim and ThingsBoard match it by hash). The server certificate names localhost, 127.0.0.1 and ::1, so a device verifies it by either name.
Keys are ECDSA P-256 (fast on a microcontroller's mbedTLS; ThingsBoard accepts RSA or EC alike).
"""

import datetime
import ipaddress
import os
import ssl
import sys

NAMES = ("localhost", "127.0.0.1", "::1")


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key):
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _cert(subject, issuer, pub, signer, ca, names=(), usage=None):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False),
                            critical=True)
    else:
        alt = []
        for n in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        if alt:
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([usage or ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return b.sign(signer, hashes.SHA256())


def ensure(tls_dir, names=NAMES):
    """The paths {"ca", "cert", "key"} in tls_dir, generating the CA and the server pair if missing."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    os.makedirs(tls_dir, exist_ok=True)
    paths = {"ca": os.path.join(tls_dir, "ca.pem"), "ca_key": os.path.join(tls_dir, "ca.key"),
             "cert": os.path.join(tls_dir, "server.pem"), "key": os.path.join(tls_dir, "server.key")}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    pem = serialization.Encoding.PEM
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tbsim test CA")])
    ca = _cert(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = _cert(name, ca_name, key.public_key(), ca_key, False, names)
    _write(paths["ca_key"], _pem_key(ca_key))
    _write(paths["key"], _pem_key(key))
    _write(paths["cert"], cert.public_bytes(pem))
    _write(paths["ca"], ca.public_bytes(pem))  # last: its presence means the set is complete
    return paths


def client(tls_dir, name):
    """{"cert", "key"}: a client certificate CN=name from the test CA in tls_dir (made once, then reused)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    paths = ensure(tls_dir)
    out = {"cert": os.path.join(tls_dir, name + ".pem"), "key": os.path.join(tls_dir, name + ".key")}
    if os.path.exists(out["cert"]) and os.path.exists(out["key"]):
        return out
    with open(paths["ca_key"], "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    with open(paths["ca"], "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    key = _key()
    cert = _cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), ca.subject, key.public_key(), ca_key,
                 False, (), ExtendedKeyUsageOID.CLIENT_AUTH)
    _write(out["key"], _pem_key(key))
    _write(out["cert"], cert.public_bytes(serialization.Encoding.PEM))  # last: the pair is complete
    return out


def server_context(tls_dir):
    """An ssl.SSLContext serving the certificate in tls_dir (made if missing)."""
    paths = ensure(tls_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(paths["cert"], paths["key"])
    return ctx, paths


if __name__ == "__main__":
    _dir = sys.argv[1] if len(sys.argv) > 1 else "run/tbsim-tls"
    print(ensure(_dir)["ca"])
    for _name in sys.argv[2:]:
        print(client(_dir, _name)["cert"])
