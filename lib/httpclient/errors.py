# The HTTP client's errors. Socket faults stay OSError (DESIGN §4.6).


class HttpError(Exception):
    pass


class Timeout(HttpError):
    """No complete response within the request's time limit; the connection is closed."""


class BadResponse(HttpError):
    """A response this client cannot use: malformed framing, or larger than allowed."""


class TlsError(OSError):
    """The TLS handshake failed (e.g. the server's certificate did not verify). An OSError,
    so the link supervisor retries with back-off, as for any other connection fault."""
