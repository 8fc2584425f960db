# tools/coap-client over DTLS 1.2 with X.509 (mutual auth) against libcoap's
# coap-server-openssl: the same stack, the socket wrapped by MicroPython's ssl module.
import os
import shutil
import subprocess

import pytest

import mpy
from tbtest import free_port, wait_until

CLIENT = os.path.join(mpy.ROOT, "tools", "coap-client")
pytestmark = pytest.mark.skipif(shutil.which("coap-server-openssl") is None, reason="libcoap3-bin not installed")


def _udp_bound(port):
    """A UDP socket of this machine is bound to `port` (IPv4 or IPv6)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                if any(line.split()[1].endswith(":%04X" % port) for line in list(f)[1:]):
                    return True
        except OSError:
            pass
    return False


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client", "other"):
        _openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
    for name in ("server", "client"):
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", name + ".crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    # a certificate that no CA of ours signed
    _openssl("x509", "-req", "-in", "other.csr", "-signkey", "other.key", "-out", "other.crt", "-days", "2", cwd=d)
    return d


@pytest.fixture(scope="module")
def server(pki):
    port = free_port(pair=True)  # libcoap's server: coap on -p PORT, coaps on PORT + 1
    p = subprocess.Popen(["coap-server-openssl", "-A", "127.0.0.1", "-p", str(port), "-c", str(pki / "server.crt"),
                          "-j", str(pki / "server.key"), "-C", str(pki / "ca.crt")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # until the server has bound its coaps port (the kernel's socket table, not a guessed 0.3 s)
    assert wait_until(lambda: _udp_bound(port + 1) or p.poll() is not None, 30) and p.poll() is None, p.returncode
    yield "coaps://127.0.0.1:%d" % (port + 1)
    p.terminate()
    p.wait(timeout=5)


def client(pki, *args, cert="client", ca="ca.crt", timeout=30):
    tls = ["-C", str(pki / ca)]
    if cert:
        tls += ["-c", str(pki / (cert + ".crt")), "-j", str(pki / (cert + ".key"))]
    return subprocess.run([CLIENT, *tls, *args], capture_output=True, timeout=timeout)


def test_get_over_dtls_with_mutual_auth(pki, server):
    r = client(pki, server + "/time")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip()) > 5


def test_block2_over_dtls_matches_libcoap(pki, server):
    ours = client(pki, server + "/example_data")
    theirs = subprocess.run(["coap-client-openssl", "-C", str(pki / "ca.crt"), "-c", str(pki / "client.crt"),
                             "-j", str(pki / "client.key"), server + "/example_data"], capture_output=True, timeout=30)
    assert ours.returncode == 0, ours.stderr
    assert len(ours.stdout) > 1024 and ours.stdout == theirs.stdout


def test_observe_over_dtls(pki, server):
    r = client(pki, "-s", "3", server + "/time")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) >= 2


def test_server_certificate_from_another_ca_is_refused(pki, server):
    r = client(pki, server + "/time", ca="other.crt")
    assert r.returncode != 0
    assert b"not correctly signed" in r.stderr or b"MBEDTLS" in r.stderr


def test_unsigned_client_certificate_is_refused(pki, server):
    r = client(pki, server + "/time", cert="other")
    assert r.returncode != 0
