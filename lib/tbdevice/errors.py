# The errors a Device call raises, whatever the link (CoAP or HTTP). ThingsBoard's refusals
# keep the code they came from (spec §2.3): the CoAP response code byte, or the HTTP status
# over HTTP (spec §15). Timeout is the same over both links. Link faults (OSError) do not
# reach the caller: the Device re-opens the link and goes on (tbdevice.supervisor).


class TbError(Exception):
    """code: the response code byte (e.g. 128 for 4.00) or the HTTP status, 0 when none applies."""

    def __init__(self, msg, code=0):
        super().__init__(msg)
        self.code = code


class Timeout(TbError):  # no answer in time (no ACK, no response, HTTP 408), or the server reset it
    pass


class BadRequest(TbError):  # 4.00: unparsable payload, unknown route, title/version mismatch
    pass


class Unauthorized(TbError):  # 4.01: unknown or wrong access token, or an X.509 certificate bound to no device
    pass


class NotFound(TbError):  # 4.04
    pass


class ServerError(TbError):  # 5.xx: core failure, rate limit, bad RPC reply
    pass


class BadPayload(TbError):  # the server's answer could not be decoded
    pass


class SchemaMismatch(TbError):  # a value the profile's protobuf schema cannot carry (spec §11)
    pass


class ProvisionError(TbError):
    """status: NOT_FOUND, FAILURE (spec §9) or BAD_REQUEST when the server gave no body."""

    def __init__(self, msg, status, code=0):
        super().__init__(msg, code)
        self.status = status


def for_code(code, what):
    """The error for a CoAP response code; `what` names the operation, for the message."""
    return _for(code >> 5 << 8 | (code & 31), "%s: %d.%02d" % (what, code >> 5, code & 31), code)


def for_status(status, what):
    """The same for an HTTP status (spec §15): e.code is then the HTTP status, e.g. 401."""
    return _for(status // 100 << 8 | status % 100, "%s: HTTP %d" % (what, status), status)


def _for(c, msg, code):
    # c: class and detail as 0xCDD (4.01 and HTTP 401 both 0x401)
    cls = BadRequest if c == 0x400 else Unauthorized if c == 0x401 else NotFound if c == 0x404 else \
        ServerError if c >= 0x500 else TbError
    return cls(msg, code)

