"""tbdevice.otaurl (a URL package, spec §10.1) on CPython: what may mend (an HTTP 5xx, a server
that does not answer) raises tbdevice.errors.Timeout, never the CoAP stack's, so an HTTP device
catches one error class (issue 14 item 2); what will not mend raises OtaError."""
import asyncio
import socket
import threading

import pytest

from coap.errors import CoapError
from tbdevice import errors, otaurl
from tbdevice.otastate import OtaError


@pytest.fixture(autouse=True)
def wait_for_ms(monkeypatch):
    # MicroPython's asyncio.wait_for_ms, which otaurl uses, on CPython's asyncio
    monkeypatch.setattr(asyncio, "wait_for_ms", lambda aw, ms: asyncio.wait_for(aw, ms / 1000), raising=False)


class Server:
    """One connection at a time on loopback; answers each request with `reply` (None: never)."""

    def __init__(self, reply):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                c.recv(4096)
                if self.reply is None:
                    self.done.wait()  # holds the connection open and says nothing
                else:
                    c.sendall(self.reply)

    def close(self):
        self.done.set()
        self.sock.close()


def fetch(reply, timeout_ms=2000):
    srv = Server(reply)
    got = bytearray()

    async def data(mv):
        got.extend(mv)

    try:
        return asyncio.run(otaurl.fetch("http://127.0.0.1:%d/fw.bin" % srv.port, 0, data, timeout_ms)), bytes(got)
    finally:
        srv.close()


def test_a_served_package_arrives():
    assert fetch(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") == (5, b"hello")


@pytest.mark.parametrize("reply", [b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", None])
def test_what_may_mend_is_a_tbdevice_timeout(reply):
    with pytest.raises(errors.Timeout) as e:
        fetch(reply, timeout_ms=300)
    assert not isinstance(e.value, CoapError)


def test_what_will_not_mend_is_an_ota_error():
    with pytest.raises(OtaError, match="HTTP 404"):
        fetch(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
