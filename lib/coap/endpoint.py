# The message layer of RFC 7252 (§4) over one connected socket: Message IDs, CON
# retransmission with exponential back-off, ACK and RST (piggybacked or empty), the
# deduplication of incoming CONs, and ping. Requests, tokens and observations are the token
# layer's (coap.client.Client, a subclass): it hands over messages through transmit() and
# wait(), and find() tells which exchange an incoming CON or NON response answers.
import asyncio
import gc
import io
import random
import select
from time import ticks_add, ticks_diff, ticks_ms

from micropython import const

from coap.errors import Reset, Timeout, FormatError
from coap.exchange import Exchange, Timer
from coap.sched import idle_ms, receive
from coap.message import decode

# The message types (coap.message's), folded here: an imported name is a global lookup per use.
_CON = const(0)
_NON = const(1)
_ACK = const(2)
_RST = const(3)
_DEDUP = const(16)  # remembered incoming CON message IDs (bounded, RFC 7252 §4.5)
EXCHANGE_LIFETIME_MS = const(247000)  # RFC 7252 §4.8.2 with the default parameters
_EAGAIN = (11, 35, -0x6900)  # EAGAIN on Linux/lwIP and macOS; mbedTLS WANT_READ (coaps)


def token_of(d):
    """The token of datagram d as an int: -1 empty, 4 bytes big-endian, -2 any other
    length (never one of ours: the token layer sends 0 or 4 bytes)."""
    tkl = d[0] & 15
    if tkl == 0:
        return -1
    if tkl != 4 or len(d) < 8:
        return -2
    return (d[4] << 24) | (d[5] << 16) | (d[6] << 8) | d[7]


class Endpoint:
    """The message layer. `slots` holds the free send buffers (NSTART, RFC 7252 §4.7): a
    message is written into `body` (its options, the 0xFF marker, then from `body_at` its
    payload), then transmit() copies it after the header into a free slot and sends it. The
    token layer (a subclass) provides find(token, code): the exchange a CON or NON response
    with that token answers, or None."""

    def __init__(self, transport, ack_timeout_ms, ack_random_factor, max_retransmit, nstart, timeout_ms, bufsize,
                 inline_ms):
        self.transport = transport
        self.ack_timeout_ms = ack_timeout_ms
        self.ack_span = int(ack_timeout_ms * (ack_random_factor - 1))
        self.max_retransmit = max_retransmit
        self.timeout_ms = timeout_ms  # the default deadline of an exchange
        self.bufsize = bufsize  # the largest datagram sent or accepted
        self.inline_ms = min(inline_ms, ack_timeout_ms)  # the inline wait ends before a retransmission
        # Allocated once (DESIGN §4.2): per slot a buffer and views at the two header lengths
        # (no token, a 4-byte token); the message being built; a buffer for ACK/RST.
        self.slots = []
        for _ in range(nstart):
            b = bytearray(bufsize)
            v = memoryview(b)
            self.slots.append((b, v[4:], v[8:]))
        self._slot_ev = None  # made when a request first waits for a slot
        self.body = io.BytesIO(bufsize)  # reserves bufsize bytes; readinto(buf, n) reads n
        self.body_at = 0
        self.body_key = None  # what the options in body were made from (the token layer's route)
        self._small = bytearray(4)
        self._by_mid = {}  # CON messages sent and not released, by Message ID
        self._timer = None  # the retransmission timer, made at the first wait()
        self._dmid = [-1] * _DEDUP
        self._dtype = bytearray(_DEDUP)
        self._dtime = [0] * _DEDUP
        self._di = 0
        self._mid = random.getrandbits(16)
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
        self.last_rx = ticks_ms()  # when the peer was last heard from (liveness); only _read_one moves it

    # ---- the link ---------------------------------------------------------------
    async def connect(self):
        """Open the socket (resolving the host once; over DTLS the handshake too, driven step
        by step without blocking the event loop) and start the receive task."""
        self.stop_rx()
        self.transport.open()
        mid = self._mid = (self._mid + 1) & 0xFFFF
        ping = bytes((0x40, 0, mid >> 8, mid & 0xFF))  # a CoAP ping: the first datagram of a new session
        while not self.transport.handshake(ping):
            await asyncio.sleep_ms(20)
        self.generation += 1  # last_rx stays: a new socket is not a word from the peer
        self._poll = select.poll()
        self._poll.register(self.transport.sock, select.POLLIN)
        self.start_rx()

    def start_rx(self):
        """(Re)start the receive task, e.g. inside each asyncio.run() of a blocking caller,
        and the timer's when requests wait: one that waits across a re-open (connect())
        is still retransmitted and timed out, and frees its send slot."""
        self.stop_rx()
        self._rx_task = asyncio.create_task(receive(self.transport.sock, self._read_one))
        if self._timer is not None:
            self._timer.resume()

    def stop_rx(self):
        """Stop the receive and timer tasks (start_rx() and the next wait() start them)."""
        if self._rx_task is not None:
            self._rx_task.cancel()
            self._rx_task = None
        t = self._timer
        if t is not None and t.task is not None:
            t.task.cancel()
            t.task = None


    def drop(self):
        """Forget the socket after a link fault, at once: the receive task stops with it;
        connect() opens a new one. Waiting requests fail at their next retransmission."""
        if self._rx_task is not None:
            self._rx_task.cancel()
            self._rx_task = None
        self._poll = None
        self.transport.close()

    async def close(self):
        self.drop()
        for ex in (self._timer.waiting if self._timer else []) + list(self._by_mid.values()):
            ex.err = OSError(9)  # EBADF: the link is gone
            ex.wake()
        self._by_mid = {}
        self.stop_rx()

    # ---- sending ------------------------------------------------------------------
    async def free_slot(self):
        """Wait until one of the NSTART send slots is free (RFC 7252 §4.7)."""
        while not self.slots:
            if self._slot_ev is None:
                self._slot_ev = asyncio.Event()
            self._slot_ev.clear()
            await self._slot_ev.wait()

    def transmit(self, ex, hdr, timeout_ms):
        """Send the message in `body` as ex, in a free slot (`slots` not empty) and with room
        for it (`body` holds at most bufsize - 8 bytes): hdr is the first two header bytes
        (version, type, code; coap.client.header()); the Message ID and ex's token are
        added. Then waits for the answer in place up to inline_ms (see Client). A send that
        fails is ex's error, raised by wait()."""
        b = self.body
        n = b.tell()
        if n == self.body_at:
            n -= 1  # no payload: no marker either (§3)
        slot = self.slots.pop()
        ex.slot = slot
        buf = slot[0]
        t = ex.token
        b.seek(0)
        if t < 0:
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
        mid = (self._mid + 1) & 0xFFFF
        self._mid = mid
        buf[1] = hdr & 0xFF
        buf[2] = mid >> 8
        buf[3] = mid & 0xFF
        ex.code = 0
        ex.rto = 0  # set by wait(): most answers come within the inline wait
        con = hdr >> 12 == 4  # version 1, CON
        ex.acked = not con
        if con:
            ex.mid = mid
            self._by_mid[mid] = ex
        now = ticks_ms()
        ex.rto_at = now  # the send time, until wait() adds the timeout to it
        ex.deadline = ticks_add(now, timeout_ms)
        try:
            self.transport.send(buf, n)
        except OSError:
            try:  # once more: a full send queue (ENOBUFS, EAGAIN) is often gone already
                self.transport.send(buf, n)
            except OSError as e:
                ex.err = e
                return
        self.sent += 1
        poll = self._poll
        if self.inline_ms == 0 or poll is None:
            return
        # The inline wait: poll the socket and handle what arrives until ex's answer or
        # inline_ms (at most the first retransmission time), and never past the time another
        # task is due (coap.sched). No task switch when the answer is quick.
        end = ticks_add(now, self.inline_ms)
        while ex.code == 0 and ex.err is None:
            left = idle_ms(ticks_diff(end, ticks_ms()))
            if left <= 0 or next(poll.ipoll(left), None) is None or not self._read_one():
                return

    def release(self, ex):
        """Forget ex's Message ID and free its send slot (answered, failed or abandoned)."""
        slot = ex.slot
        ex.slot = None
        if ex.mid >= 0:
            self._by_mid.pop(ex.mid, None)
            ex.mid = -1
        self.slots.append(slot)
        if self._slot_ev is not None:  # someone may wait for a slot
            self._slot_ev.set()

    async def wait(self, ex):
        """Await the answer to a sent message (a CON is retransmitted until acknowledged,
        coap.exchange.Timer) until its deadline. Raises NoAck, Timeout, Reset, OSError."""
        if ex.code == 0 and ex.err is None and not (ex.ack_only and ex.acked):
            if ex.ev is None:
                ex.ev = asyncio.Event()
            if self._timer is None:
                self._timer = Timer(self)
            self._timer.add(ex)
            try:
                while ex.code == 0 and ex.err is None and not (ex.ack_only and ex.acked):
                    ex.ev.clear()
                    await ex.ev.wait()
            finally:
                self._timer.waiting.remove(ex)
        if ex.err is not None:
            raise ex.err

    async def ping(self, timeout_ms=None):
        """CoAP ping (§4.3): an empty CON, answered by RST. True when the peer answered."""
        await self.free_slot()
        ex = Exchange()
        b = self.body
        b.seek(0)
        b.write(b"\xff")  # no options, no payload: a bare header
        self.body_at = 1
        self.body_key = None
        self.transmit(ex, 0x4000, timeout_ms or self.timeout_ms)  # version 1, CON, 0.00 (empty)
        try:
            await self.wait(ex)
        except Reset:
            return True
        except Timeout:
            return False
        finally:
            self.release(ex)
        return True

    # ---- receiving ----------------------------------------------------------------------
    def _read_one(self):
        # Read and handle one datagram, if one is waiting; False after a MemoryError (the
        # caller backs off). Nothing that arrives may end the receive loop.
        try:
            d = self.transport.recv(self.bufsize + 1)  # one byte more tells an oversized one apart
            if d is None:
                return True
            if len(d) > self.bufsize:
                # Larger than any message we accept (a full block with header and options):
                # dropped whole (RFC 7252 §4.6 leaves the size to us).
                self.oversized += 1
                self.rejected += 1
                return True
            self.received += 1
            self.last_rx = ticks_ms()
            self._on_datagram(d)
        except Exception as e:
            return self._rx_fault(e)
        return True

    def _rx_fault(self, e):
        if isinstance(e, OSError) and e.args[0] in _EAGAIN:
            return True  # nothing was waiting after all
        self.rx_error = e
        if isinstance(e, MemoryError):  # a full heap: the datagram waits in the socket; later
            self.nomem += 1
            gc.collect()
            return False
        if isinstance(e, OSError):
            # ECONNREFUSED (an ICMP port unreachable for a datagram of ours: nobody serves
            # that port now): what waits for an ACK fails with it, for the caller to decide.
            for ex in list(self._by_mid.values()):
                if not ex.acked and ex.code == 0:
                    ex.err = e
                    ex.wake()
            return True
        self.rejected += 1  # e.g. a malformed datagram that got past the checks: that one only
        return True

    def _on_datagram(self, d):
        # One datagram: an empty message is the message layer's own; a response goes to its
        # exchange (found by Message ID for an ACK, whose token must match too, §5.3.2; by
        # token for the others); a CON is acknowledged, and remembered against duplicates.
        if len(d) < 4 or d[0] >> 6 != 1:
            self.rejected += 1  # not even a header to answer (§4.2: silently ignore)
            return
        t = (d[0] >> 4) & 3
        mid = (d[2] << 8) | d[3]
        if d[1] == 0:
            self._on_empty(d, t, mid)
            return
        if t == _RST or d[0] & 15 > 8:
            self._bad(t, mid)
            return
        if t == _CON and self._dup(mid):
            return
        if t == _ACK:
            ex = self._by_mid.get(mid)
            # The token must match too; the empty token (most requests') without a call.
            if ex is not None and (d[0] & 15 or ex.token != -1) and token_of(d) != ex.token:
                ex = None
        else:
            ex = self.find(token_of(d), d[1])
        if ex is None:
            # A response nobody waits for, or a request to this client: rejected, and
            # answered with RST unless an ACK (§4.3, RFC 7641 §3.6).
            self.rejected += 1
            if t != _ACK:
                self._reply(_RST, mid)
                if t == _CON:
                    self._remember(mid, _RST)
            return
        msg = None
        if not ex.light:
            msg = self._decode(d, t)
            if msg is None:
                return
        if t == _CON:
            self._reply(_ACK, mid)  # every CON response, separate or a notification (§5.2.2)
            self._remember(mid, _ACK)
        ex.acked = True
        if msg is None:  # a light exchange: the code is all it wants
            ex.code = d[1]
        elif ex.on_response is not None and ex.msg is not None:
            self._notify(ex, msg)  # a later response: an observation's notification
            return
        else:
            ex.code = d[1]
            ex.msg = msg
        if ex.ev is not None:
            ex.ev.set()  # the request sleeping in wait()

    def _decode(self, d, t):
        # The Message in d, or None when it is malformed (rejected as _bad() says).
        try:
            return decode(d)
        except FormatError:
            self._bad(t, (d[2] << 8) | d[3])
            return None

    def _notify(self, ex, msg):
        # The observer's callback: its failure costs that notification only.
        try:
            ex.on_response(msg)
        except Exception as e:
            self.rx_error = e
            self.rejected += 1

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
                ex.wake()

    def _reply(self, mtype, mid):
        b = self._small
        b[0] = 0x40 | (mtype << 4)
        b[1] = 0
        b[2] = mid >> 8
        b[3] = mid & 0xFF
        try:
            self.transport.send(b)
        except OSError:
            self.rx_error = OSError("could not send an ACK or RST")

    def _dup(self, mid):
        # An incoming CON seen before (§4.5): the reply sent the first time is sent again.
        if mid not in self._dmid:
            return False
        now = ticks_ms()
        for i in range(_DEDUP):
            if self._dmid[i] == mid and ticks_diff(now, self._dtime[i]) < EXCHANGE_LIFETIME_MS:
                self.duplicates += 1
                self._reply(self._dtype[i], mid)
                return True
        return False

    def _remember(self, mid, reply):
        i = self._di
        self._dmid[i] = mid
        self._dtype[i] = reply
        self._dtime[i] = ticks_ms()
        self._di = (i + 1) % _DEDUP

    def _bad(self, t, mid):
        # Message format error: reject a CON with RST, ignore anything else (§4.2, §4.3).
        self.rejected += 1
        if t == _CON:
            self._reply(_RST, mid)
