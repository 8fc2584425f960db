# What the message layer (coap.endpoint) keeps per message sent: the Exchange, and the one
# timer that retransmits CON messages (RFC 7252 §4.2) and times out every awaited answer.
import asyncio
import random
from time import ticks_add, ticks_diff, ticks_ms

from micropython import const

from coap.errors import NoAck, Timeout

_TICK_MS = const(100)  # the longest the timer sleeps while an exchange waits


class Exchange:
    """One message sent and the answer awaited for it. The message layer keeps the Message
    ID, the send slot and the retransmission state; the answer is `code` (0 while none came),
    `msg` (the decoded Message, unless `light`) or `err`; each later response matched to it
    (an observation's notifications) goes to `on_response(msg)`. The token layer keeps the
    token (-1 empty, else an int of up to 30 bits sent as 4 bytes)."""

    def __init__(self, token=-1, on_response=None):
        self.token = token
        self.on_response = on_response
        self.light = False  # the answer's code is all that is wanted: no Message is made
        self.ack_only = False  # the wait ends once the message is acknowledged
        self.code = 0
        self.msg = None
        self.err = None
        self.mid = -1
        self.acked = False
        self.slot = None  # the send slot (buffer and views) holding the datagram
        self.n = 0
        self.deadline = 0
        self.rto = 0  # the current retransmission timeout, doubled per retransmission
        self.rto_at = 0
        self.tries = 0
        self.ev = None  # the Event a waiting request sleeps on, made at its first wait

    def wake(self):
        if self.ev is not None:
            self.ev.set()


class Timer:
    """Retransmits and times out the exchanges in `waiting`, from one task that runs while
    any waits. It sleeps until the next due time, at most _TICK_MS (and half an
    ACK_TIMEOUT): a new exchange is due no sooner after its send, unless its own timeout is
    shorter, which is then kept to within that."""

    def __init__(self, ep):
        self.ep = ep  # the endpoint: its transport, parameters and counters
        self.waiting = []
        self.task = None

    def add(self, ex):
        """Time ex from its send: its first retransmission timeout is random in
        [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR] (§4.2; integer arithmetic)."""
        ep = self.ep
        if ex.rto == 0:
            ex.rto = ep.ack_timeout_ms + ((random.getrandbits(16) * ep.ack_span) >> 16)
            ex.rto_at = ticks_add(ex.rto_at, ex.rto)
            ex.tries = 0
        self.waiting.append(ex)
        self.resume()

    def resume(self):
        """Start the task if anything waits and it does not run (the endpoint's stop_rx()
        cancels it)."""
        if self.waiting and self.task is None:
            self.task = asyncio.create_task(self._run())

    async def _run(self):
        while self.waiting:
            await asyncio.sleep_ms(self._expire())
        self.task = None

    def _expire(self):
        # Retransmit what is due, fail what is out of time or tries; ms until the next due
        # time, at most the tick.
        ep = self.ep
        now = ticks_ms()
        nxt = min(_TICK_MS, ep.ack_timeout_ms // 2 or 1)
        for ex in self.waiting:
            if ex.code or ex.err is not None or (ex.ack_only and ex.acked):
                continue  # its wait is over
            if ticks_diff(ex.deadline, now) <= 0:
                ex.err = Timeout("no response") if ex.acked else NoAck("no ACK")
                ex.wake()
                continue
            due = ex.deadline
            if not ex.acked:
                if ticks_diff(ex.rto_at, now) <= 0:
                    if ex.tries >= ep.max_retransmit:
                        ex.err = NoAck("no ACK after %d retransmissions" % ex.tries)
                        ex.wake()
                        continue
                    ex.tries += 1
                    ex.rto *= 2  # binary exponential back-off (§4.2)
                    ex.rto_at = ticks_add(now, ex.rto)
                    ep.retransmissions += 1
                    try:
                        ep.transport.send(ex.slot[0], ex.n)
                        ep.sent += 1
                    except OSError as e:
                        ex.err = e
                        ex.wake()
                        continue
                if ticks_diff(ex.rto_at, due) < 0:
                    due = ex.rto_at
            left = ticks_diff(due, now)
            if left < nxt:
                nxt = left
        return nxt
