# The token layer of RFC 7252 (§5.3) on the message layer (coap.endpoint): requests and
# their tokens, matching responses to them, and keeping an observation's token (RFC 7641).
# Block-wise transfers (coap.blockwise, loaded when one is needed) and observations
# (coap.observe) are built on exchange() and the public methods here.
import random
from time import ticks_add, ticks_diff, ticks_ms

from coap import message as m
from coap.endpoint import EXCHANGE_LIFETIME_MS, Endpoint
from coap.exchange import Exchange
from coap.route import Route
from coap.transport import UdpTransport


def header(con, code):
    """The first two header bytes as one int, as send() takes them: version 1, CON or NON
    (the token length is added by the client), and the code."""
    return (0x40 if con else 0x50) << 8 | code


class Client(Endpoint):
    """A CoAP client over one connected UDP socket (or `transport`).

    `inline_ms`: after sending, wait up to this long for the answer in place (a blocking
    poll of the socket, handling whatever arrives meanwhile) before yielding to asyncio.
    An answer within it costs no task switch and no allocation; other tasks wait, by up
    to inline_ms. 0 always yields at once.

    `log` is accepted and unused (the stack logs nothing).

    `empty_token`: requests carry the empty token (RFC 7252 §5.3.1: fine for requests made
    one at a time) while no other request holds it and none that held it was abandoned
    within EXCHANGE_LIFETIME; otherwise, and for observations, 4 random bytes."""

    def __init__(
        self,
        host,
        port=5683,
        ack_timeout_ms=2000,
        ack_random_factor=1.5,
        max_retransmit=4,
        nstart=1,
        timeout_ms=30000,
        block_size=1024,
        bufsize=1280,
        transport=None,
        log=None,
        inline_ms=50,
        empty_token=True,
    ):
        super().__init__(transport or UdpTransport(host, port), ack_timeout_ms, ack_random_factor, max_retransmit,
                         nstart, timeout_ms, bufsize, inline_ms)
        self.block_size = block_size
        self.empty_token = empty_token
        self._by_token = {}
        self._spare = []  # finished exchanges, reused
        self._quiet = None  # ticks until which the empty token is not reused (an abandoned request)
        self._empty_free = empty_token  # the empty token is free for the next request

    async def close(self):
        await Endpoint.close(self)
        self._by_token = {}

    # ---- tokens -------------------------------------------------------------------------
    def new_token(self):
        """A random token no exchange holds (RFC 7252 §5.3.1), as the int send() writes as 4 bytes."""
        while True:
            t = random.getrandbits(30)  # a small int on every port
            if t not in self._by_token:
                return t

    def _take(self, token=None, on_response=None):
        # An exchange with the given token, or the empty one when it is free and safe (see
        # the class doc), else a random one. Pooled (end() returns it) unless it may become
        # an observation, whose exchange stays matched after end().
        if on_response is not None:
            ex = Exchange(token, on_response)
        else:
            ex = self._spare.pop() if self._spare else Exchange()
            ex.light = False
            ex.ack_only = False
        if token is None:
            q = self._quiet
            if q is not None and ticks_diff(ticks_ms(), q) >= 0:
                self._quiet = None
                self._empty_free = self.empty_token and -1 not in self._by_token
            if self._empty_free:
                self._empty_free = False
                token = -1
            else:
                token = self.new_token()
        ex.token = token
        self._by_token[token] = ex
        return ex

    def forget(self, token):
        """Stop matching responses with this token (an observation that ended)."""
        self._by_token.pop(token, None)

    def find(self, token, code):
        # A CON or NON response (class 2-5) to one of our tokens; a request is never ours.
        if code >> 5 < 2 or code >> 5 > 5:
            return None
        return self._by_token.get(token)

    # ---- requests -------------------------------------------------------------------------
    def stage(self, route, options=None):
        """Begin a request without a coroutine (the allocation-free path): the route's
        options go into `body`, where the caller then writes the payload (str, bytes, or
        an encoder writing to the stream, e.g. json.dump) before send(). Nothing may await
        between stage() and send()."""
        b = self.body
        if route is self.body_key and not options:
            b.seek(self.body_at)  # the same route as last time: its options are there already
            return
        b.seek(0)
        b.write(route.with_options(options) if options else route.opts)
        b.write(b"\xff")  # the payload marker; dropped again when no payload follows
        self.body_at = b.tell()
        self.body_key = None if options else route

    def payload(self):
        """The payload written since stage(), as bytes."""
        b = self.body
        return b.getvalue()[self.body_at : b.tell()]

    def send(self, hdr):
        """Send the request staged since stage(), when a send slot is free (`slots` is not
        empty); hdr is header(con, code). Waits for the answer in place up to inline_ms
        and returns the exchange: its code is all that is kept of the answer. While that
        is 0 and ex.err None, `await wait(ex)`; end(ex) in every case. A link fault is the
        exchange's error. None, and nothing sent, when the payload is above block_size:
        that takes Block1 (request())."""
        n = self.body.tell()
        if n - self.body_at > self.block_size:
            return None
        if n + 8 > self.bufsize:
            raise ValueError("message larger than buffer")
        ex = self._take()
        ex.light = True
        self.transmit(ex, hdr, self.timeout_ms)
        return ex

    async def exchange(self, code, route, payload=b"", options=(), con=True, timeout_ms=None, token=None,
                       on_response=None, ack_only=False):
        """One request message and its response Message; no block-wise handling.
        `token`: the token to use (an observation's); `on_response(msg)`: called for each
        later notification when the response establishes an observation (RFC 7641), until
        forget(token); `ack_only`: return None once the request is acknowledged by an
        empty ACK, without waiting for its response."""
        await self.free_slot()
        self.stage(route, options)
        if payload:
            self.body.write(payload)
        if self.body.tell() + 8 > self.bufsize:  # checked before a token is taken
            raise ValueError("message larger than buffer")
        ex = self._take(token, on_response)
        ex.ack_only = ack_only
        self.transmit(ex, header(con, code), timeout_ms or self.timeout_ms)
        try:
            await self.wait(ex)
            return ex.msg
        finally:
            self.end(ex)

    def end(self, ex):
        """Forget a request (answered, failed or abandoned) and free its send slot."""
        if ex.slot is None:
            return
        self.release(ex)
        t = ex.token
        if ex.on_response is None or ex.msg is None or ex.msg.opt(m.OBSERVE) is None:
            self._by_token.pop(t, None)
        if t == -1:
            if ex.code:
                self._empty_free = self._quiet is None
            else:
                # Abandoned: a late answer could still come with the empty token and be taken
                # for the next request's, so random tokens until it cannot (§4.8.2).
                self._quiet = ticks_add(ticks_ms(), EXCHANGE_LIFETIME_MS)
        if ex.on_response is None:  # a pooled one (an observation's stays matched)
            ex.msg = ex.err = None  # the caller has read the response; the object is reused
            self._spare.append(ex)

    async def request(self, code, route, payload=b"", options=(), con=True, timeout_ms=None, sink=None):
        """Send a request and return the response Message. `route` is a Route or a path
        string; `options` are extra (number, value) pairs. Bodies larger than the block size
        go out with Block1; Block2 responses are followed to the end, the body passed block
        by block to `sink(memoryview)` when given. A str payload is sent as UTF-8."""
        if not isinstance(route, Route):
            route = Route(route)
        if len(payload) > self.block_size:
            from coap import blockwise

            msg = await blockwise.upload(self, code, route, payload, options, con, timeout_ms)
        else:
            msg = await self.exchange(code, route, payload, options, con, timeout_ms)
        if msg.opt(m.BLOCK2) is not None:
            from coap import blockwise

            return await blockwise.follow(self, code, route, options, con, timeout_ms, sink, msg)
        if sink is not None and msg.payload:
            sink(msg.payload)
        return msg
