# CoAP client endpoint: message layer (RFC 7252 §4) and token layer (§5.3) over one
# connected UDP socket, driven by MicroPython's asyncio. Block-wise transfers are in
# coap.blockwise, observations in coap.observe; both build on request()/_exchange().
import asyncio
import gc
import random
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

try:
    _wait_readable = asyncio.core._io_queue.queue_read  # one long-lived waiter, no allocation
    _tasks = asyncio.core._task_queue
    _tasks.remove  # noqa: B018 (feature detection)
except AttributeError:  # an asyncio without these internals: poll and use Events
    _wait_readable = None
    _tasks = None


def _wake(ex):
    # Resume the request sleeping in _transact now (what Task.cancel() does to a sleeping
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


class _Exchange:
    # One request (or observation) waiting for its response(s), keyed by token (an int
    # of up to 30 bits, sent as 4 bytes: no bytes object per request, a small-int key).
    def __init__(self, token=None, on_response=None):
        self.token = token
        self.mid = -1
        self.acked = False
        self.msg = None
        self.err = None
        self.task = None  # the request sleeping until its response, ACK or timeout
        self.on_response = on_response  # set for observations: called per notification

    def done(self, msg=None, err=None):
        if msg is not None:
            self.msg = msg
        if err is not None:
            self.err = err
        _wake(self)


class Client:
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
    ):
        self.transport = transport or UdpTransport(host, port)
        self.host = host
        self.ack_timeout_ms = ack_timeout_ms
        self.ack_random_factor = ack_random_factor
        self._ack_span = int(ack_timeout_ms * (ack_random_factor - 1))
        self.max_retransmit = max_retransmit
        self.timeout_ms = timeout_ms
        self.block_size = block_size
        self.log = log
        # Allocate at start-up and reuse (DESIGN §4.2): one receive buffer that holds a
        # full 1024-byte block with header, token and options; one send buffer per
        # outstanding interaction (NSTART, RFC 7252 §4.7); a 4-byte buffer for ACK/RST.
        self._rx = bytearray(bufsize)
        self._free = [bytearray(bufsize) for _ in range(nstart)]
        self._slot_ev = asyncio.Event()
        self._small = bytearray(4)
        self._by_token = {}
        self._by_mid = {}
        self._spare = []  # finished exchanges, reused
        self._dmid = [-1] * _DEDUP
        self._dtype = bytearray(_DEDUP)
        self._dtime = [0] * _DEDUP
        self._di = 0
        self._mid = random.getrandbits(16)
        self._rx_task = None
        self.rx_error = None
        # Counters for diagnostics and benchmarks.
        self.sent = 0
        self.received = 0
        self.retransmissions = 0
        self.duplicates = 0
        self.rejected = 0
        self.oversized = 0  # datagrams longer than the receive buffer, dropped
        self.generation = 0  # counts connect(): observers re-register when it changes
        self.last_rx = time.ticks_ms()  # when the peer was last heard from (liveness)

    # ---- link -------------------------------------------------------------
    async def connect(self):
        """Open the socket (resolving the host once) and start the receive task."""
        self._stop_rx()
        self.transport.open()
        self.generation += 1
        self.last_rx = time.ticks_ms()
        self.start_rx()

    def start_rx(self):
        """(Re)start the receive task, e.g. inside each asyncio.run() of a blocking caller."""
        self._stop_rx()
        self._rx_task = asyncio.create_task(self._rx_loop())

    def drop(self):
        """Forget the socket after a link fault, at once: the receive task stops with it
        (it would read a closed socket); connect() opens a new one."""
        self._stop_rx()
        self.transport.close()

    def _stop_rx(self):
        if self._rx_task is not None:
            self._rx_task.cancel()
            self._rx_task = None

    async def close(self):
        self._stop_rx()
        self.transport.close()
        for ex in list(self._by_token.values()) + list(self._by_mid.values()):
            ex.done(err=OSError(9))  # EBADF: the link is gone
        self._by_token = {}
        self._by_mid = {}

    def next_mid(self):
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def new_token(self):
        while True:
            t = random.getrandbits(30)  # random tokens (RFC 7252 §5.3.1); a small int on every port
            if t not in self._by_token:
                return t

    # ---- requests -----------------------------------------------------------
    async def request(self, code, route, payload=b"", options=(), con=True, timeout_ms=None, sink=None):
        """Send a request and return the response Message. `route` is a Route or a
        path string; `options` are extra (number, value) pairs. Bodies larger than the
        block size go out with Block1; Block2 responses are followed to the end, the
        body passed block by block to `sink(memoryview)` when given. A str payload is
        sent as UTF-8."""
        if not isinstance(route, Route):
            route = Route(route)
        if type(payload) is str:
            payload = payload.encode()
        if len(payload) > self.block_size or m.BLOCK2 in [o[0] for o in options]:
            from coap import blockwise

            return await blockwise.request(self, code, route, payload, options, con, timeout_ms, sink)
        msg = await self.exchange(code, route, payload, options, con, timeout_ms)
        if msg.opt(m.BLOCK2) is not None:
            from coap import blockwise

            return await blockwise.follow(self, code, route, options, con, timeout_ms, sink, msg)
        if sink is not None and msg.payload:
            sink(msg.payload)
        return msg

    async def exchange(self, code, route, payload=b"", options=(), con=True, timeout_ms=None, token=None, ex=None):
        """One request message and its response; no block-wise handling."""
        if not self._free:
            await self._slot()
        buf = self._free.pop()
        pooled = ex is None
        if pooled:
            ex = self._spare.pop() if self._spare else _Exchange()
            ex.token = self.new_token() if token is None else token
        try:
            opts = route.with_options(options) if options else route.opts
            mid = self.next_mid()
            n = m.encode_into(buf, m.CON if con else m.NON, code, mid, ex.token, opts, payload)
            return await self._transact(ex, buf, n, con, timeout_ms or self.timeout_ms)
        finally:
            self._free.append(buf)
            self._slot_ev.set()
            if pooled:
                ex.msg = ex.err = None  # the caller has the response; the object is reused
                self._spare.append(ex)

    async def _slot(self):
        while not self._free:
            self._slot_ev.clear()
            await self._slot_ev.wait()

    async def _transact(self, ex, buf, n, con, timeout_ms):
        mid = (buf[2] << 8) | buf[3]
        if ex.token is not None:
            self._by_token[ex.token] = ex
        if con:
            ex.mid = mid
            self._by_mid[mid] = ex
        ex.acked = not con
        ex.msg = ex.err = None
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        # Initial timeout: random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR] (§4.2).
        # Integer arithmetic: no float objects per request.
        to = self.ack_timeout_ms + ((random.getrandbits(16) * self._ack_span) >> 16)
        tries = 0
        try:
            self.transport.send(buf, n)
            self.sent += 1
            while ex.msg is None and ex.err is None:
                left = time.ticks_diff(deadline, time.ticks_ms())
                if left <= 0:
                    raise Timeout("no response") if ex.acked else NoAck("no ACK")
                wait = left if ex.acked else min(left, to)
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
                # Retransmit only when the ACK timeout (not the overall deadline) ran out.
                if wait < left and not ex.acked and ex.msg is None and ex.err is None:
                    if tries >= self.max_retransmit:
                        raise NoAck("no ACK after %d retransmissions" % tries)
                    tries += 1
                    to *= 2  # binary exponential back-off (§4.2)
                    self.retransmissions += 1
                    self.transport.send(buf, n)
                    self.sent += 1
            if ex.err is not None:
                raise ex.err
            return ex.msg
        finally:
            if con:
                self._by_mid.pop(mid, None)
            if ex.on_response is None or ex.msg is None or ex.msg.opt(m.OBSERVE) is None:
                self._by_token.pop(ex.token, None)

    async def ping(self, timeout_ms=None):
        """CoAP ping (§4.3): an empty CON answered by RST. True when the peer answered."""
        ex = _Exchange()
        mid = self.next_mid()
        if not self._free:
            await self._slot()
        buf = self._free.pop()
        try:
            n = m.header_into(buf, m.CON, m.EMPTY, mid, b"")
            await self._transact(ex, buf, n, True, timeout_ms or self.timeout_ms)
        except Reset:
            return True
        except Timeout:
            return False
        finally:
            self._free.append(buf)
            self._slot_ev.set()
        return True

    # ---- receiving ----------------------------------------------------------
    async def _rx_loop(self):
        # One datagram per wake-up: the IO queue polls again before the next read, so
        # an empty socket is never read (on this port a would-block recv() costs an
        # exception and a lost 1280-byte buffer).
        tr = self.transport
        buf = self._rx
        while True:
            if _wait_readable is not None:
                yield _wait_readable(tr.sock)
            else:
                await asyncio.sleep_ms(5)
            try:
                n = tr.recv_into(buf)
            except OSError as e:
                # ECONNREFUSED: an ICMP port unreachable came back for a datagram of
                # ours, so nobody serves that port now. Requests still waiting for an
                # ACK fail with it (the caller's link supervisor decides what next)
                # instead of retransmitting into the void until they time out.
                self.rx_error = e
                self._fail_unacked(e)
                continue
            except MemoryError as e:  # a full heap must not end the loop: try again later
                self.rx_error = e
                gc.collect()
                await asyncio.sleep_ms(10)
                continue
            if n is None:
                continue
            if n > len(buf):
                # Larger than any message we accept (a full block with header and options):
                # dropped whole, never parsed cut short (RFC 7252 §4.6 leaves the size to us).
                self.oversized += 1
                self.rejected += 1
                continue
            self.received += 1
            self.last_rx = time.ticks_ms()
            try:
                self._on_datagram(buf, n)
            except Exception as e:  # e.g. an observer's callback: that datagram only, never the loop
                self.rx_error = e
                self.rejected += 1

    def _fail_unacked(self, err):
        for ex in list(self._by_mid.values()):
            if not ex.acked and ex.msg is None:
                ex.done(err=err)

    def _reply(self, mtype, mid):
        b = self._small
        b[0] = 0x40 | (mtype << 4)
        b[1] = 0
        b[2] = mid >> 8
        b[3] = mid & 0xFF
        try:
            self.transport.send(b)
        except OSError as e:
            self.rx_error = e

    def _seen(self, mid):
        # Duplicate detection of incoming CON messages (§4.5); returns the reply type
        # that was sent for it, or -1.
        now = time.ticks_ms()
        for i in range(_DEDUP):
            if self._dmid[i] == mid and time.ticks_diff(now, self._dtime[i]) < _EXCHANGE_LIFETIME_MS:
                return self._dtype[i]
        return -1

    def _remember(self, mid, reply):
        i = self._di
        self._dmid[i] = mid
        self._dtype[i] = reply
        self._dtime[i] = time.ticks_ms()
        self._di = (i + 1) % _DEDUP

    def _on_datagram(self, buf, n):
        if n < 4 or buf[0] >> 6 != 1:
            self.rejected += 1  # not even a header to answer (§4.2: silently ignore)
            return
        t = (buf[0] >> 4) & 3
        tkl = buf[0] & 15
        code = buf[1]
        mid = (buf[2] << 8) | buf[3]
        if code == m.EMPTY:
            if tkl or n > 4:
                self._bad(t, mid)
            elif t == m.ACK or t == m.RST:
                ex = self._by_mid.get(mid)
                if ex is not None:
                    ex.acked = True
                    ex.done(err=Reset("RST for message %d" % mid) if t == m.RST else None)
            elif t == m.CON:
                self._reply(m.RST, mid)  # CoAP ping (§4.3)
            return
        if t == m.RST or tkl > 8:
            self._bad(t, mid)
            return
        if t == m.CON:
            dup = self._seen(mid)
            if dup >= 0:
                self.duplicates += 1
                self._reply(dup, mid)  # re-send what we answered the first time
                return
        code_class = code >> 5
        # Our tokens are 4 bytes holding an int (see _Exchange): read it without allocating.
        tok = (buf[4] << 24 | buf[5] << 16 | buf[6] << 8 | buf[7]) if tkl == 4 and n >= 8 else -1
        ex = None
        if t == m.ACK:
            ex = self._by_mid.get(mid)
        elif code_class >= 2 and code_class <= 5:
            ex = self._by_token.get(tok)
        if ex is None or (t == m.ACK and tok != ex.token):
            # A response nobody waits for (or a request to this client): reject (§4.3, RFC 7641 §3.6).
            self.rejected += 1
            if t != m.ACK:
                self._reply(m.RST, mid)
                if t == m.CON:
                    self._remember(mid, m.RST)
            return
        try:
            msg = m.decode(buf, n)
        except FormatError:
            self._bad(t, mid)
            return
        if t == m.CON:
            self._reply(m.ACK, mid)  # ACK every CON response, separate or notification (§5.2.2)
            self._remember(mid, m.ACK)
        ex.acked = True
        if ex.on_response is not None and ex.msg is not None:
            ex.on_response(msg)  # a later notification of an observation
            return
        ex.done(msg)

    def _bad(self, t, mid):
        # Message format error: reject a CON with RST, ignore anything else (§4.2, §4.3).
        self.rejected += 1
        if t == m.CON:
            self._reply(m.RST, mid)
