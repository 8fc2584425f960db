# Request options encoded once and reused per request: the path and query of one
# resource (a ThingsBoard route never changes for a device), plus per-request extras.
from coap import message as m


class Route:
    """Uri-Path/Uri-Query (and other leading) options encoded once, reused per request.
    `last` is the highest option number in `opts`, so later options can be appended."""

    def __init__(self, path="", query=(), options=()):
        msg = m.Message()
        for seg in path.split("/") if isinstance(path, str) else path:
            if seg:
                msg.add(m.URI_PATH, seg)
        for q in query:  # each name=value is its own option (RFC 7252 §6.5, spec §6.1)
            msg.add(m.URI_QUERY, q)
        for num, val in options:
            msg.add(num, val)
        self.opts = m.encode_options(msg.options)
        self.last = msg.options[-1][0] if msg.options else 0

    def with_options(self, options):
        """The route's option bytes with extra (number, value) pairs added in order."""
        extra = m.Message()
        for num, val in options:
            extra.add(num, val)
        if extra.options[0][0] >= self.last:
            return self.opts + m.encode_options(extra.options, self.last)
        # The extras interleave with the route's options: decode those and encode all.
        msg = m.decode(b"\x40\x01\x00\x00" + self.opts)
        for num, val in extra.options:
            msg.add(num, val)
        return m.encode_options(msg.options)
