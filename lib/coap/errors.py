# The CoAP stack's one small error tree (DESIGN §4.6). Socket faults stay OSError.


class CoapError(Exception):
    pass


class FormatError(CoapError):
    """A datagram that is not a well-formed CoAP message (RFC 7252 §4.2: message format error)."""


class Timeout(CoapError):
    """No acknowledgement or no response in time."""


class NoAck(Timeout):
    """A CON request never acknowledged: the peer heard nothing (or is gone), as opposed
    to a response that did not come after the ACK. Over DTLS it means the session is lost."""


class Reset(CoapError):
    """The peer answered our message with RST (RFC 7252 §4.2)."""


class BadResponse(CoapError):
    """A response this client cannot use: inconsistent block options, oversize body, ..."""
