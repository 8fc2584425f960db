# httpclient.response (RFC 9112 framing), sans-IO: the same functions run under pytest and
# on the unix port (tests/mpy_unit.py).
from httpclient import response
from httpclient.errors import BadResponse


def _raises(fn, *args):
    try:
        fn(*args)
    except BadResponse:
        return True
    return False


def _head(*lines, status=b"HTTP/1.1 200 OK\r\n"):
    h = response.Head(*response.status_line(status))
    for line in lines:
        h.field(line)
    return h


def test_status_lines():
    assert response.status_line(b"HTTP/1.1 200 OK\r\n") == (200, True)
    assert response.status_line(memoryview(b"HTTP/1.1 408 Request Timeout\r\n")) == (408, True)
    assert response.status_line(b"HTTP/1.0 500\r\n") == (500, False)
    assert response.status_line(b"HTTP/1.1 204 \n") == (204, True)
    for bad in (b"", b"\r\n", b"HTTP/1.1 2000 OK\r\n", b"HTTP/1.1 OK\r\n", b"ICY 200 OK\r\n", b"HTTP/2 200\r\n",
                b"HTTP/1.1 20x OK\r\n", b"garbage garbage garbage\r\n"):
        assert _raises(response.status_line, bad), bad


def test_length_and_keep_alive():
    h = _head(b"Content-Length: 12\r\n", b"Content-Type: application/json\r\n", b"X-Other: 1\r\n")
    assert (h.length, h.chunked, h.keep, h.ctype) == (12, False, True, b"application/json")
    assert h.framing() == 12 and h.keep
    h = _head(b"content-length:0\r\n", b"Connection: close\r\n")
    assert h.length == 0 and not h.keep
    h = _head(status=b"HTTP/1.0 200 OK\r\n")
    assert not h.keep
    h = _head(b"Connection: Keep-Alive\r\n", status=b"HTTP/1.0 200 OK\r\n")
    assert h.keep
    assert _raises(_head, b"Content-Length: 1x\r\n")
    assert _raises(_head, b"Content-Length: -1\r\n")
    assert _raises(_head, b"Content-Length: 3\r\n", b"Content-Length: 4\r\n")
    assert _head(b"Content-Length: 3\r\n", b"Content-Length: 3\r\n").length == 3
    assert _raises(_head, b"no colon here\r\n")
    assert _raises(_head, b": empty name\r\n")


def test_chunked_wins_and_read_to_close():
    h = _head(b"Transfer-Encoding: chunked\r\n", b"Content-Length: 5\r\n")
    assert h.chunked and h.framing() == response.NONE and h.keep
    assert _head(b"Transfer-Encoding: gzip, chunked\r\n").chunked
    assert _raises(_head, b"Transfer-Encoding: gzip\r\n")
    h = _head()  # neither: the body runs to the close, so the connection cannot be kept
    assert h.framing() == response.NONE and not h.keep


def test_body_expected():
    assert _head().body_expected("GET")
    assert not _head().body_expected("HEAD")
    assert not _head(status=b"HTTP/1.1 204 No Content\r\n").body_expected("GET")
    assert not _head(status=b"HTTP/1.1 304 Not Modified\r\n").body_expected("GET")
    assert not _head(status=b"HTTP/1.1 100 Continue\r\n").body_expected("POST")


def test_chunk_sizes():
    assert response.chunk_size(b"1a\r\n") == 26
    assert response.chunk_size(b"0\r\n") == 0
    assert response.chunk_size(b"400;name=value\r\n") == 1024
    assert response.chunk_size(memoryview(b"FF \r\n")) == 255
    for bad in (b"\r\n", b"xyz\r\n", b"123456789\r\n", b";ext\r\n"):
        assert _raises(response.chunk_size, bad), bad


def test_a_field_the_client_ignores_costs_no_heap_when_its_colon_is_known():
    # Connection finds the colon in its buffer and passes it: the fields a real server adds
    # (Cache-Control, Vary, Date, X-Frame-Options, ...) are then skipped by the length of their
    # names without allocating, on every response. The ones acted on still work given the colon.
    import gc

    h = _head()
    lines = [memoryview(b"Cache-Control: no-cache, no-store\r\n"), memoryview(b"Date: Mon, 07 Dec 2026\r\n"),
             memoryview(b"X-Frame-Options: DENY\r\n"), memoryview(b"Vary: Origin\r\n")]
    cols = [bytes(line).find(b":") for line in lines]
    if hasattr(gc, "mem_alloc"):  # MicroPython
        gc.collect()
        gc.disable()
        before = gc.mem_alloc()
        for k in range(len(lines)):  # not zip(): its tuples would be counted
            h.field(lines[k], cols[k])
        used = gc.mem_alloc() - before
        gc.enable()
        assert used == 0, used
    h.field(memoryview(b"Keep-Alive: timeout=60\r\n"), 10)  # as long as "connection": compared, then skipped
    assert (h.length, h.keep, h.ctype) == (response.NONE, True, None)
    h.field(memoryview(b"Content-Length: 7\r\n"), 14)
    h.field(memoryview(b"Connection: close\r\n"), 10)
    assert h.length == 7 and not h.keep
    assert _raises(h.field, memoryview(b"no colon\r\n"), -1)
