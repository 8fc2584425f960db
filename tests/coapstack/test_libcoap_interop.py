# tools/coap-client (lib/coap on the unix port) against libcoap's coap-server-notls, and
# its output compared with libcoap's own coap-client-notls.
import os
import random
import re
import shutil
import socket
import subprocess
import time

import pytest
from coapdrive import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OURS = os.path.join(ROOT, "tools", "coap-client")
SERVER = shutil.which("coap-server-notls")
THEIRS = shutil.which("coap-client-notls")

pytestmark = pytest.mark.skipif(not (SERVER and THEIRS), reason="libcoap3-bin (coap-server-notls) not installed")


def _pong(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.1)
    try:
        s.sendto(b"\x40\x00\x12\x34", ("127.0.0.1", port))
        return s.recv(64)[:1] == b"\x70"  # RST: CoAP ping answered (RFC 7252 §4.3)
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture
def server():
    port = free_port()
    proc = subprocess.Popen([SERVER, "-A", "127.0.0.1", "-p", str(port), "-v", "0", "-d", "10"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if _pong(port):
                break
            time.sleep(0.02)
        else:
            pytest.fail("coap-server-notls did not come up")
        yield "coap://127.0.0.1:%d" % port
    finally:
        proc.terminate()
        proc.wait(5)


def ours(*args, timeout=20):
    t = time.monotonic()
    r = subprocess.run([OURS, *args], capture_output=True, timeout=timeout)
    r.elapsed = time.monotonic() - t
    return r


def theirs(*args):
    r = subprocess.run([THEIRS, *args], capture_output=True, timeout=20)
    return r.stdout


def body(n, seed):
    # Printable and without newlines, so both clients' text output compares byte for byte.
    r = random.Random(seed)
    return "".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n)).encode()


def one_body(out):
    """Our client prints the payload and a newline; libcoap adds a newline at exit too."""
    assert out.endswith(b"\n"), out[-20:]
    return out[:-1]


def test_get_time(server):
    r = ours(server + "/time")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(rb"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\n", r.stdout), r.stdout


@pytest.mark.parametrize("bflag", [[], ["-b", "64"], ["-b", "16"]], ids=["default", "b64", "b16"])
def test_block2_example_data_matches_libcoap(server, bflag):
    mine = ours(*bflag, server + "/example_data")
    assert mine.returncode == 0, mine.stderr
    ref = theirs(*bflag, server + "/example_data")
    assert len(ref) > 1024, "example_data spans several blocks"
    assert one_body(mine.stdout) == one_body(ref)


@pytest.mark.parametrize("put_b", [None, "64"], ids=["put1024", "put64"])
def test_put_3000_bytes_then_block2_matches(server, put_b, tmp_path):
    data = body(3000, seed=int(put_b or 0))
    f = tmp_path / "body.txt"
    f.write_bytes(data)
    put = ours("-m", "put", "-f", str(f), *(["-b", put_b] if put_b else []), server + "/example_data")
    assert put.returncode == 0, put.stderr
    for bflag in ([], ["-b", "64"]):
        ref = one_body(theirs(*bflag, server + "/example_data"))
        assert ref == data, "libcoap fetches what we uploaded with Block1"
        mine = ours(*bflag, server + "/example_data")
        assert mine.returncode == 0 and one_body(mine.stdout) == data


def test_put_small_and_post(server):
    put = ours("-m", "put", "-e", "hello from lib/coap", server + "/example_data")
    assert put.returncode == 0, put.stderr
    assert one_body(theirs(server + "/example_data")) == b"hello from lib/coap"
    # POST: the example resource does not allow it (4.05, non-zero exit); with -d the
    # server creates a resource on PUT and accepts POST to it.
    post = ours("-m", "post", "-e", "x", server + "/example_data")
    assert post.returncode == 1 and b"4.05" in post.stderr
    assert ours("-m", "put", "-e", "created", server + "/dyn").returncode == 0
    assert one_body(ours(server + "/dyn").stdout) == b"created"
    assert ours("-m", "post", "-e", "more", server + "/dyn").returncode == 0


def test_observe_time_prints_several_notifications(server):
    r = ours("-s", "3", server + "/time", timeout=15)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) >= 3, lines  # the first response and a notification a second
    assert all(re.fullmatch(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d", x) for x in lines), lines
    # libcoap may notify within the same second as the registration (a new Observe value,
    # same text), so times repeat at most once each and never go backwards.
    assert lines == sorted(lines) and len(set(lines)) >= 3, lines
    assert 2.9 <= r.elapsed <= 6, r.elapsed


def test_not_found_exits_non_zero(server):
    r = ours(server + "/nothere")
    assert r.returncode != 0
    assert b"4.04" in r.stderr


def test_closed_port_exits_non_zero_within_B():
    r = ours("-B", "2", "coap://127.0.0.1:%d/time" % free_port(), timeout=10)
    assert r.returncode != 0
    assert r.elapsed <= 2 + 1.0, r.elapsed
    assert r.stdout == b""
