# ThingsBoard errors keep the CoAP response code they came from (spec §2.3).
# CoAP faults (coap.errors.Timeout, Reset, ...) and OSError pass through unchanged.


class TbError(Exception):
    """code: the response code byte (e.g. 128 for 4.00), 0 when none applies."""

    def __init__(self, msg, code=0):
        super().__init__(msg)
        self.code = code


class BadRequest(TbError):  # 4.00: unparsable payload, unknown route, title/version mismatch
    pass


class Unauthorized(TbError):  # 4.01: unknown or wrong access token
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


_BY_CODE = {128: BadRequest, 129: Unauthorized, 132: NotFound}


def for_code(code, what):
    """The error for a response code: `what` names the operation, for the message."""
    cls = _BY_CODE.get(code) or (ServerError if code >= 160 else TbError)
    return cls("%s: %d.%02d" % (what, code >> 5, code & 31), code)


_BY_STATUS = {400: BadRequest, 401: Unauthorized, 404: NotFound}


def for_status(status, what):
    """The same for an HTTP status (spec §15): e.code is then the HTTP status, e.g. 401."""
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else TbError)
    return cls("%s: HTTP %d" % (what, status), status)
