# What the message layer (coap.endpoint) keeps per message sent: the Exchange, and the one
# timer that retransmits CON messages (RFC 7252 §4.2) and times out every awaited answer.
import asyncio
import random
from time import ticks_add, ticks_diff, ticks_ms

from coap.errors import NoAck, Timeout


class Exchange:
    """One message sent and the answer awaited for it. The message layer keeps the Message
    ID, the send slot and the retransmission state; the answer is `code` (0 while none came),
    `msg` (the decoded Message, unless `light`) or `err`; each later response matched to it
    (an observation's notifications) goes to `on_response(msg)`. The token layer keeps the
    token (-1 empty, else an int of up to 30 bits sent as 4 bytes) and `pooled`."""

    def __init__(self, token=-1, on_response=None):
        self.token = token
        self.on_response = on_response
        self.light = False  # the answer's code is all that is wanted: no Message is made
        self.pooled = False
        self.ack_only = False  # the wait ends once the message is acknowledged
        self.code = 0
        self.msg = None
        self.err = None
        self.mid = -1
        self.acked = False
        self.slot = None  # the send slot (buffer and views) holding the datagram
        self.n = 0
        self.sent_at = 0
        self.deadline = 0
        self.rto = 0  # the current retransmission timeout, doubled per retransmission
        self.rto_at = 0
        self.tries = 0
        self.ev = None  # the Event a waiting request sleeps on, made at its first wait

    def over(self):
        """True once the wait for this exchange is over: answered, failed, or acknowledged
        when that is all that is wanted."""
        return self.code != 0 or self.err is not None or (self.ack_only and self.acked)

    def wake(self):
        if self.ev is not None:
            self.ev.set()


class Timer:
    """Retransmits and times out the exchanges in `waiting`, from one task. It sleeps until
    the next due time, at most half an ACK_TIMEOUT: an exchange is due no earlier than
    ACK_TIMEOUT after its send, so the timer is never late for a new one unless its timeout
    is shorter (add() then starts it anew). With nothing to wait for, it waits for add()."""

    def __init__(self, ep):
        self.ep = ep  # the endpoint: its transport, parameters and counters
        self.waiting = []
        self._task = None
        self._at = None  # when the task wakes next; None: it waits for work
        self._work = asyncio.Event()

    def add(self, ex):
        """Time ex from its send: its first retransmission timeout is random in
        [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR] (§4.2; integer arithmetic)."""
        ep = self.ep
        if ex.rto == 0:
            ex.rto = ep.ack_timeout_ms + ((random.getrandbits(16) * ep.ack_span) >> 16)
            ex.rto_at = ticks_add(ex.sent_at, ex.rto)
            ex.tries = 0
        self.waiting.append(ex)
        due = ex.deadline
        if not ex.acked and ticks_diff(ex.rto_at, due) < 0:
            due = ex.rto_at
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        elif self._at is None:
            self._work.set()
        elif ticks_diff(due, self._at) < 0:
            self.stop()
            self._task = asyncio.create_task(self._run())

    def stop(self):
        if self._task is not None:
            self._task.cancel()
        self._task = self._at = None

    async def _run(self):
        while True:
            ms = self._expire()
            if ms < 0:
                self._at = None
                self._work.clear()
                await self._work.wait()
            else:
                ms = min(ms, self.ep.ack_timeout_ms // 2 or 1)
                self._at = ticks_add(ticks_ms(), ms)
                await asyncio.sleep_ms(ms)

    def _expire(self):
        # Retransmit what is due, fail what is out of time or tries; ms until the next due
        # time, or -1 when nothing waits.
        ep = self.ep
        now = ticks_ms()
        nxt = -1
        for ex in self.waiting:
            if ex.over():
                continue
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
            if nxt < 0 or left < nxt:
                nxt = left
        return nxt
