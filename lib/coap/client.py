# CoAP client endpoint: message layer (RFC 7252 §4) and token layer (§5.3) over one
# connected UDP socket, driven by MicroPython's asyncio. Block-wise transfers are in
# coap.blockwise, observations in coap.observe; both build on request()/exchange().
#
# The per-message path (stage, send, _inline, _read_one, _on_datagram and what they call)
# keeps its functions' frames within the 11 words MicroPython runs on the C stack: a larger
# frame is allocated on the heap and freed on every call (tools/mpyframes.py,
# tests/unit/test_hot_frames.py). Hence the small helpers and the state kept on the
# exchange; _send and _read_one are the two flat exceptions, each called once a message.
import asyncio
import gc
import io
import random
import select
import time

from coap import message as m
from coap.errors import NoAck, Reset, Timeout, FormatError
from coap.route import Route  # noqa: F401 (the public name stays coap.client.Route)
from coap.transport import UdpTransport

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


_DEDUP = const(16)  # remembered incoming CON message IDs (bounded, RFC 7252 §4.5)
_EXCHANGE_LIFETIME_MS = const(247000)  # RFC 7252 §4.8.2 with the default parameters
_EMPTY = const(-1)  # the empty token
# coap.message's constants, again here: const() folds only names of its own module.
_CON = const(0)
_NON = const(1)
_ACK = const(2)
_RST = const(3)
_CODE_EMPTY = const(0)
_EAGAIN = (11, 35, -0x6900)  # EAGAIN on Linux/lwIP and macOS; mbedTLS WANT_READ (coaps)
_NO_ROUTE = Route()  # an empty message (ping): no options
_CON_EMPTY = const(0x4000)  # the first two header bytes: version 1, CON, code 0.00 (a ping)

try:
    _wait_readable = asyncio.core._io_queue.queue_read  # one long-lived waiter, no allocation
    _tasks = asyncio.core._task_queue
    _tasks.remove  # noqa: B018 (feature detection)
except AttributeError:  # an asyncio without these internals: poll and use Events
    _wait_readable = None
    _tasks = None


try:  # module aliases: one lookup per use instead of two
    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
    _ticks_add = time.ticks_add
except AttributeError:  # CPython (the host tests): MicroPython's wrapping milliseconds

    _clock = getattr(time, "monotonic")

    def _ticks_ms():
        return int(_clock() * 1000) & 0x3FFFFFFF

    def _ticks_diff(a, b):
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000

    def _ticks_add(a, b):
        return (a + b) & 0x3FFFFFFF


_getrandbits = random.getrandbits

try:
    _Stream = io.BytesIO  # MicroPython: BytesIO(n) reserves n bytes; readinto(buf, n) reads n
    _Stream(1).readinto(bytearray(1), 1)
except TypeError:  # CPython (the host tests)

    class _Stream(io.BytesIO):
        def __init__(self, n):
            super().__init__()

        def readinto(self, buf, n=-1):
            return super().readinto(buf if n < 0 else memoryview(buf)[:n])


def _wake(ex):
    # Resume the request sleeping in wait() now (what Task.cancel() does to a sleeping
    # task, without the exception): no task, closure or Event per request, unlike
    # asyncio.wait_for_ms, which costs about 1 KB and 68k instructions each time.
    t = ex.task
    if t is not None:
        ex.task = None
        if _tasks is not None:
            _tasks.remove(t)
            _tasks.push(t)
        else:
            t.set()


def header(con, code):
    """The first two header bytes as one int, as send() takes them: version 1, CON or NON
    (the token length is added by the client), and the code."""
    return (0x40 if con else 0x50) << 8 | code


class _Exchange:
    # One request (or observation) waiting for its response(s), keyed by token: an int of
    # up to 30 bits sent as 4 bytes (no bytes object per request, a small-int key), or -1
    # for the empty token. Every field is set here, so reuse never grows the object.
    def __init__(self, token=None, on_response=None):
        self.token = token
        self.mid = -1
        self.acked = False
        self.light = False  # only the response code is wanted (Client.send): no Message made
        self.pooled = False  # taken from the client's spares, returned to them by end()
        self.code = 0  # the response's code; 0 while none has come
        self.msg = None
        self.err = None
        self.task = None  # the request sleeping until its response, ACK or timeout
        self.on_response = on_response  # set for observations: called per notification
        self.slot = None  # the send slot (buffer and views) holding the datagram
        self.buf = None
        self.n = 0
        self.deadline = 0
        self.rto = 0  # the current retransmission timeout (§4.2), doubled per retransmission
        self.rto_at = 0
        self.tries = 0

    def done(self, msg=None, err=None):
        if msg is not None:
            self.msg = msg
            self.code = msg.code
        if err is not None:
            self.err = err
        _wake(self)


class Client:
    """`inline_ms`: after sending, wait up to this long for the answer in place (a blocking
    poll of the socket, handling whatever arrives meanwhile) before yielding to asyncio,
    but never past the time another task is due: timers and ready tasks are not delayed;
    only a task waiting on another stream may be, by up to inline_ms. An answer within it
    costs no task switch and no allocation. 0 always yields at once.

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
        self.transport = transport or UdpTransport(host, port)
        self.host = host
        self.ack_timeout_ms = ack_timeout_ms
        self.ack_random_factor = ack_random_factor
        self._ack_span = int(ack_timeout_ms * (ack_random_factor - 1))
        self.max_retransmit = max_retransmit
        self.timeout_ms = timeout_ms
        self.block_size = block_size
        self.bufsize = bufsize  # the largest datagram sent or accepted (a block with header and options)
        self._maxlen = bufsize + 1  # asked of recv(): one byte more tells an oversized datagram apart
        self.log = log
        self.inline_ms = inline_ms
        self.empty_token = empty_token
        # Allocated at start-up and reused (DESIGN §4.2): a send buffer per outstanding
        # interaction (NSTART, RFC 7252 §4.7) with views at the two header lengths (no
        # token, 4-byte token); a 4-byte buffer for ACK/RST; the stream a request is
        # written into (stage() .. send(): options, then the payload straight from its
        # encoder, e.g. json.dump, with no payload object).
        self.slots = []  # the free ones: a request takes one from stage()/send() to end()
        for _ in range(nstart):
            b = bytearray(bufsize)
            v = memoryview(b)
            self.slots.append((b, v[4:], v[8:]))
        self._slot_ev = asyncio.Event()
        self._slot_waiting = 0
        self._small = bytearray(4)
        self.body = _Stream(bufsize)
        self._at = 0
        self._by_token = {}
        self._by_mid = {}
        self._spare = []  # finished exchanges, reused
        self._dmid = [-1] * _DEDUP
        self._dtype = bytearray(_DEDUP)
        self._dtime = [0] * _DEDUP
        self._di = 0
        self._mid = _getrandbits(16)
        self._quiet = None  # ticks until which the empty token is not reused (an abandoned request)
        self._empty_free = empty_token  # the empty token is free for the next request
        self._staged = None  # the route whose options the body holds (stage() skips writing them again)
        self._poll = None
        self._rx_task = None
        self.rx_error = None
        # Counters for diagnostics and benchmarks.
        self.sent = 0
        self.received = 0
        self.retransmissions = 0
        self.duplicates = 0
        self.rejected = 0
        self.oversized = 0  # datagrams longer than bufsize, dropped
        self.nomem = 0  # reads that found no heap for the datagram (it waits in the socket)
        self.generation = 0  # counts connect(): observers re-register when it changes
        self.last_rx = _ticks_ms()  # when the peer was last heard from (liveness)

    # ---- link -------------------------------------------------------------
    async def connect(self):
        """Open the socket (resolving the host once) and start the receive task."""
        self._stop_rx()
        self.transport.open()
        self.generation += 1
        self.last_rx = _ticks_ms()
        self._poll = select.poll()
        self._poll.register(self.transport.sock, select.POLLIN)
        self.start_rx()

    def start_rx(self):
        """(Re)start the receive task, e.g. inside each asyncio.run() of a blocking caller."""
        self._stop_rx()
        self._rx_task = asyncio.create_task(self._rx_loop())

    def stop_rx(self):
        """Stop the receive task, e.g. at the end of each asyncio.run() of a blocking caller."""
        self._stop_rx()

    def drop(self):
        """Forget the socket after a link fault, at once: the receive task stops with it
        (it would read a closed socket); connect() opens a new one."""
        self._stop_rx()
        self._poll = None
        self.transport.close()

    def _stop_rx(self):
        if self._rx_task is not None:
            self._rx_task.cancel()
            self._rx_task = None

    async def close(self):
        self.drop()
        for ex in list(self._by_token.values()) + list(self._by_mid.values()):
            ex.done(err=OSError(9))  # EBADF: the link is gone
        self._by_token = {}
        self._by_mid = {}

    def new_token(self):
        while True:
            t = _getrandbits(30)  # random tokens (RFC 7252 §5.3.1); a small int on every port
            if t not in self._by_token:
                return t

    def _token(self):
        # The empty token when it is free and safe (see the class doc), else a random one.
        # _empty_free says so at once; after an abandoned request, _quiet says until when not.
        q = self._quiet
        if q is not None and _ticks_diff(_ticks_ms(), q) >= 0:
            self._quiet = None
            self._empty_free = self.empty_token and _EMPTY not in self._by_token
        if self._empty_free:
            return _EMPTY
        return self.new_token()

    # ---- requests -----------------------------------------------------------
    async def request(self, code, route, payload=b"", options=(), con=True, timeout_ms=None, sink=None):
        """Send a request and return the response Message. `route` is a Route or a
        path string; `options` are extra (number, value) pairs. Bodies larger than the
        block size go out with Block1; Block2 responses are followed to the end, the
        body passed block by block to `sink(memoryview)` when given. A str payload is
        sent as UTF-8."""
        if not isinstance(route, Route):
            route = Route(route)
        if len(payload) > self.block_size or m.BLOCK2 in [o[0] for o in options]:
            from coap import blockwise

            if type(payload) is str:
                payload = payload.encode()
            return await blockwise.request(self, code, route, payload, options, con, timeout_ms, sink)
        msg = await self.exchange(code, route, payload, options, con, timeout_ms)
        if msg.opt(m.BLOCK2) is not None:
            from coap import blockwise

            return await blockwise.follow(self, code, route, options, con, timeout_ms, sink, msg)
        if sink is not None and msg.payload:
            sink(msg.payload)
        return msg

    async def exchange(self, code, route, payload=b"", options=(), con=True, timeout_ms=None, token=None, ex=None):
        """One request message and its response Message; no block-wise handling."""
        await self._slot()
        self.stage(route, options)
        if payload:
            self.body.write(payload)
        self._fits()  # before an exchange (and maybe the empty token) is taken
        if ex is None:
            ex = self._take(token)
        self._send(ex, header(con, code), timeout_ms or self.timeout_ms)
        try:
            await self.wait(ex)
            return ex.msg
        finally:
            self.end(ex)

    async def _slot(self):
        # Until one of the NSTART send slots is free (RFC 7252 §4.7).
        while not self.slots:
            self._slot_waiting += 1
            try:
                self._slot_ev.clear()
                await self._slot_ev.wait()
            finally:
                self._slot_waiting -= 1

    def _take(self, token=None):
        # A pooled exchange (end() returns it) with a token of its own.
        ex = self._spare.pop() if self._spare else _Exchange()
        ex.pooled = True
        ex.light = False
        if token is None:
            token = _EMPTY if self._empty_free else self._token()
            if token == _EMPTY:
                self._empty_free = False
        ex.token = token
        return ex

    def stage(self, route, options=None):
        """Begin a request without a coroutine (the allocation-free path): the route's
        options go into `self.body`, where the caller then writes the payload (str, bytes,
        or an encoder writing to the stream, e.g. json.dump) before send(). Nothing may
        await between stage() and send()."""
        b = self.body
        if route is self._staged and not options:
            b.seek(self._at)  # the same route as last time: its options are there already
            return
        b.seek(0)
        b.write(route.with_options(options) if options else route.opts)
        b.write(b"\xff")  # the payload marker; dropped again when no payload follows
        self._at = b.tell()
        self._staged = None if options else route

    def payload(self):
        """The payload written since stage(), as bytes."""
        b = self.body
        return b.getvalue()[self._at : b.tell()]

    def _fits(self):
        if self.body.tell() + 8 > self.bufsize:
            raise ValueError("message larger than buffer")

    def send(self, hdr):
        """Send the request staged since stage(), when a send slot is free (`slots` is not
        empty); hdr is header(con, code). Waits for the answer in place up to inline_ms
        and returns the exchange: its code is all that is kept of the answer. While that
        is 0 and ex.err None, `await wait(ex)`; end(ex) in every case. A link fault is the
        exchange's error. None, and nothing sent, when the payload is above block_size:
        that takes Block1 (request())."""
        n = self.body.tell()
        if n - self._at > self.block_size:
            return None
        if n + 8 > self.bufsize:
            raise ValueError("message larger than buffer")
        ex = self._take(None)
        ex.light = True
        self._send(ex, hdr, self.timeout_ms)
        return ex

    def _send(self, ex, hdr, timeout_ms):
        # ex's datagram: header and token, then the staged options and payload, in a free
        # send slot; matched by token and (a CON) by Message ID; sent, then the inline
        # wait. One flat function: each call costs about as much as a dozen bytecodes
        # here, and this frame goes to the heap anyway (more than 11 words).
        b = self.body
        n = b.tell()
        if n == self._at:
            n -= 1  # no payload: no marker either (§3)
        slot = self.slots.pop()
        ex.slot = slot
        buf = slot[0]
        ex.buf = buf
        mid = (self._mid + 1) & 0xFFFF
        self._mid = mid
        buf[1] = hdr & 0xFF
        buf[2] = mid >> 8
        buf[3] = mid & 0xFF
        t = ex.token
        b.seek(0)
        if t is None or t < 0:
            buf[0] = hdr >> 8
            b.readinto(slot[1], n)
            n += 4
        else:
            buf[0] = (hdr >> 8) | 4
            buf[4] = (t >> 24) & 0xFF
            buf[5] = (t >> 16) & 0xFF
            buf[6] = (t >> 8) & 0xFF
            buf[7] = t & 0xFF
            b.readinto(slot[2], n)
            n += 8
        ex.n = n
        if t is not None:
            self._by_token[t] = ex
        con = hdr >> 12 == 4  # version 1, type CON
        if con:
            ex.mid = mid
            self._by_mid[mid] = ex
        ex.acked = not con
        ex.code = 0
        # The retransmission timer starts from the send time kept in rto_at; wait() sets
        # it (rto 0 until then): most answers come within the inline wait, which is
        # shorter than ACK_TIMEOUT.
        ex.rto = 0
        now = _ticks_ms()
        ex.rto_at = now
        ex.deadline = _ticks_add(now, timeout_ms)
        try:
            self.transport.send(buf, n)
        except OSError:  # no `as e`: see _xmit_again
            if not self._xmit_again(ex):
                return
        self.sent += 1
        if self.inline_ms and self._poll is not None:
            self._inline(ex)

    def _xmit_again(self, ex):
        # After a failed send: once more, keeping the error (raised by wait()) if it fails
        # again. Apart, because `except ... as e` makes a frame larger.
        try:
            self.transport.send(ex.buf, ex.n)
        except OSError as e:
            ex.err = e
            return False
        return True

    def end(self, ex):
        """Forget a request (answered, failed or abandoned) and free its send slot."""
        slot = ex.slot
        if slot is None:
            return
        ex.slot = ex.buf = None
        if ex.mid >= 0:
            self._by_mid.pop(ex.mid, None)
            ex.mid = -1
        t = ex.token
        if ex.on_response is None or ex.msg is None or ex.msg.opt(m.OBSERVE) is None:
            self._by_token.pop(t, None)
        if t == _EMPTY:
            if ex.code:
                self._empty_free = self._quiet is None
            else:
                # Abandoned: a late answer could still come with the empty token and be taken
                # for the next request's, so random tokens until it cannot (§4.8.2).
                self._quiet = _ticks_add(_ticks_ms(), _EXCHANGE_LIFETIME_MS)
        self.slots.append(slot)
        if self._slot_waiting:
            self._slot_ev.set()
        if ex.pooled:
            ex.msg = ex.err = None  # the caller has read the response; the object is reused
            self._spare.append(ex)

    def _inline(self, ex):
        # Wait for ex's answer in place, up to inline_ms and never past its first
        # retransmission time, handling every datagram that arrives meanwhile.
        end = _ticks_add(ex.rto_at, self.inline_ms if self.inline_ms < self.ack_timeout_ms else self.ack_timeout_ms)
        while ex.code == 0 and ex.err is None:
            left = self._left(end)
            if left <= 0 or next(self._poll.ipoll(left), None) is None:
                return
            self._read_one()

    def _left(self, end):
        # Milliseconds the inline wait may still take: until end, and never past the
        # time another task is due (a ready task, a timer): no task waits for it.
        now = _ticks_ms()
        left = _ticks_diff(end, now)
        if _tasks is not None:
            t = _tasks.peek()
            if t is not None and _ticks_diff(t.ph_key, now) < left:
                left = _ticks_diff(t.ph_key, now)
        return left

    async def wait(self, ex):
        """Await the answer to a sent request: retransmits a CON with exponential back-off
        (§4.2) until it is ACKed, then waits for the response until the deadline. Raises
        NoAck, Timeout, Reset, or the link's OSError."""
        if ex.rto == 0 and ex.code == 0:
            # Initial timeout: random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR] from
            # the send (§4.2). Integer arithmetic: no float objects per request.
            ex.rto = self.ack_timeout_ms + ((_getrandbits(16) * self._ack_span) >> 16)
            ex.rto_at = _ticks_add(ex.rto_at, ex.rto)
            ex.tries = 0
        while ex.code == 0 and ex.err is None:
            now = _ticks_ms()
            left = _ticks_diff(ex.deadline, now)
            if left <= 0:
                raise Timeout("no response") if ex.acked else NoAck("no ACK")
            wait = left
            if not ex.acked:
                due = _ticks_diff(ex.rto_at, now)
                if due <= 0:
                    if ex.tries >= self.max_retransmit:
                        raise NoAck("no ACK after %d retransmissions" % ex.tries)
                    ex.tries += 1
                    ex.rto *= 2  # binary exponential back-off (§4.2)
                    ex.rto_at = _ticks_add(now, ex.rto)
                    self.retransmissions += 1
                    self.transport.send(ex.buf, ex.n)
                    self.sent += 1
                    continue
                if due < wait:
                    wait = due
            # Sleep until the receive loop wakes us (_wake) or the time is up.
            if _tasks is not None:
                ex.task = asyncio.core.cur_task
                try:
                    await asyncio.sleep_ms(wait)
                finally:
                    ex.task = None
            else:
                ex.task = asyncio.Event()
                try:
                    await asyncio.wait_for_ms(ex.task.wait(), wait)
                except asyncio.TimeoutError:
                    pass
                ex.task = None
        if ex.err is not None:
            raise ex.err

    async def ping(self, timeout_ms=None):
        """CoAP ping (§4.3): an empty CON answered by RST. True when the peer answered."""
        await self._slot()
        ex = _Exchange()
        self.stage(_NO_ROUTE)
        self._send(ex, _CON_EMPTY, timeout_ms or self.timeout_ms)
        try:
            await self.wait(ex)
        except Reset:
            return True
        except Timeout:
            return False
        finally:
            self.end(ex)
        return True

    # ---- receiving ----------------------------------------------------------
    async def _rx_loop(self):
        # One datagram per wake-up: the IO queue polls again before the next read, so
        # an empty socket is never read (on this port a would-block recv() costs an
        # exception and a lost buffer of the size asked for).
        sock = self.transport.sock
        while True:
            if _wait_readable is not None:
                yield _wait_readable(sock)
            else:
                await asyncio.sleep_ms(5)
            if not self._read_one():
                await asyncio.sleep_ms(10)

    def _read_one(self):
        # Read and handle one datagram, if one is waiting; False after a MemoryError (the
        # caller backs off). Nothing that arrives may end the receive loop. The usual one,
        # a piggybacked ACK answering a light request, is handled right here.
        try:
            d = self.transport.recv(self._maxlen)
            if d is None:
                return True
            if len(d) > self.bufsize:
                # Larger than any message we accept (a full block with header and options):
                # dropped whole (RFC 7252 §4.6 leaves the size to us).
                self.oversized += 1
                self.rejected += 1
                return True
            self.received += 1
            self.last_rx = _ticks_ms()
            if len(d) >= 4 and d[0] & 0xF0 == 0x60 and d[1] >= 64:  # version 1, ACK, a response
                ex = self._by_mid.get((d[2] << 8) | d[3])
                if ex is not None and ex.light and _token(d) == ex.token:
                    ex.acked = True
                    ex.code = d[1]
                    if ex.task is not None:
                        _wake(ex)
                    return True
            self._on_datagram(d)
        except Exception as e:
            return self._rx_fault(e)
        return True

    def _rx_fault(self, e):
        if isinstance(e, OSError):
            if e.args[0] in _EAGAIN:
                return True  # nothing was waiting after all
            # ECONNREFUSED: an ICMP port unreachable came back for a datagram of ours, so
            # nobody serves that port now. Requests still waiting for an ACK fail with it
            # (the caller's link supervisor decides what next) instead of retransmitting
            # into the void until they time out.
            self.rx_error = e
            for ex in list(self._by_mid.values()):
                if not ex.acked and ex.code == 0:
                    ex.done(err=e)
            return True
        self.rx_error = e
        if isinstance(e, MemoryError):  # a full heap: try again a little later
            self.nomem += 1
            gc.collect()
            return False
        self.rejected += 1  # e.g. a malformed datagram that got past the checks: that one only
        return True

    def _on_datagram(self, d):
        # One datagram: match it to its exchange, answer it.
        if len(d) < 4 or d[0] >> 6 != 1:
            self.rejected += 1  # not even a header to answer (§4.2: silently ignore)
            return
        t = (d[0] >> 4) & 3
        mid = (d[2] << 8) | d[3]
        if d[1] == _CODE_EMPTY:
            self._on_empty(d, t, mid)
        elif t == _RST or d[0] & 15 > 8:
            self._bad(t, mid)
        elif t != _CON or not self._dup(mid):
            ex = self._match(d, t, mid)
            if ex is not None:
                self._deliver(ex, d, t)

    def _on_empty(self, d, t, mid):
        if d[0] & 15 or len(d) > 4:
            self._bad(t, mid)  # an empty message with content (§4.1)
        elif t == _CON:
            self._reply(_RST, mid)  # CoAP ping (§4.3)
        elif t != _NON:
            ex = self._by_mid.get(mid)
            if ex is not None:
                ex.acked = True
                if t == _RST:
                    ex.err = Reset("RST for message %d" % mid)
                _wake(ex)

    def _match(self, d, t, mid):
        # The exchange a response answers: by Message ID for an ACK (whose token must
        # match too), else by token; None (and RST a CON or NON) when nobody waits for it.
        if t == _ACK:
            ex = self._by_mid.get(mid)
            if ex is not None and _token(d) == ex.token:
                return ex
        elif d[1] >> 5 >= 2 and d[1] >> 5 <= 5:
            ex = self._by_token.get(_token(d))
            if ex is not None:
                return ex
        # A response nobody waits for, or a request to this client: rejected (§4.3, RFC 7641 §3.6).
        self.rejected += 1
        if t != _ACK:
            self._reply(_RST, mid)
            if t == _CON:
                self._remember(mid, _RST)
        return None

    def _deliver(self, ex, d, t):
        msg = None
        if not ex.light:
            msg = self._decode(d, t)
            if msg is None:
                return
        if t == _CON:
            self._reply(_ACK, (d[2] << 8) | d[3])  # ACK every CON response, separate or notification (§5.2.2)
            self._remember((d[2] << 8) | d[3], _ACK)
        ex.acked = True
        if msg is None:
            ex.code = d[1]  # all a light request wants: no Message, no allocation
            _wake(ex)
        elif ex.on_response is not None and ex.msg is not None:
            self._notify(ex, msg)  # a later notification of an observation
        else:
            ex.done(msg)

    def _notify(self, ex, msg):
        try:
            ex.on_response(msg)
        except Exception as e:  # the observer's callback: that notification only, never the loop
            self.rx_error = e
            self.rejected += 1

    def _decode(self, d, t):
        try:
            return m.decode(d)
        except FormatError:
            self._bad(t, (d[2] << 8) | d[3])
            return None

    def _reply(self, mtype, mid):
        b = self._small
        b[0] = 0x40 | (mtype << 4)
        b[1] = 0
        b[2] = mid >> 8
        b[3] = mid & 0xFF
        self._send_small()

    def _send_small(self):
        try:
            self.transport.send(self._small)
        except OSError:
            self.rx_error = OSError("could not send an ACK or RST")

    def _dup(self, mid):
        # An incoming CON seen before (§4.5): the reply sent the first time is sent again.
        if mid not in self._dmid:
            return False
        now = _ticks_ms()
        for i in range(_DEDUP):
            if self._dmid[i] == mid and _ticks_diff(now, self._dtime[i]) < _EXCHANGE_LIFETIME_MS:
                self.duplicates += 1
                self._reply(self._dtype[i], mid)
                return True
        return False

    def _remember(self, mid, reply):
        i = self._di
        self._dmid[i] = mid
        self._dtype[i] = reply
        self._dtime[i] = _ticks_ms()
        self._di = (i + 1) % _DEDUP

    def _bad(self, t, mid):
        # Message format error: reject a CON with RST, ignore anything else (§4.2, §4.3).
        self.rejected += 1
        if t == _CON:
            self._reply(_RST, mid)


def _token(d):
    # The token as the int the client keys exchanges by: -1 empty, -2 none of ours.
    tkl = d[0] & 15
    if tkl == 0:
        return _EMPTY
    if tkl != 4 or len(d) < 8:
        return -2
    return (d[4] << 24) | (d[5] << 16) | (d[6] << 8) | d[7]
