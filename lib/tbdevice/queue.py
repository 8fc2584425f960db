# Store and forward for telemetry: while the server cannot be reached, samples wait here
# with their client timestamps, in a bounded RAM queue that spills to files under
# state_dir, and go out in order once the link is back. When the bounds are reached the
# oldest samples go first, and `dropped` counts them (the app reports that count).
#
# Sending again after a timeout can deliver a sample twice when only the answer was lost;
# each sample carries its timestamp, and ThingsBoard keeps one value per (key, ts), so a
# second copy overwrites the first with the same value.
#
# A queue may also keep `reserve` bytes of the heap free: a RAM bound (`limit`) too large for
# the board would otherwise fill the heap during a long outage, and then nothing (a reconnect,
# a probe, the flush itself) finds room to bring the link back. Below the reserve the oldest
# samples go (or the RAM samples spill), as at the limit, down to one batch.
#
# A sample taken while the clock is not set yet keeps its ticks_ms() instead; stamp()
# turns those into epoch milliseconds once the clock is set. One that is sent (or was
# spilled to a file, or survived a reboot) before that goes without ts: the server
# stamps it on arrival (spec §5).


import gc


class TelemetryQueue:
    def __init__(self, limit=64, spill_dir=None, spill_limit=2048, batch=16, reserve=0):
        self.limit = limit  # samples kept in RAM
        # bytes of heap kept free (0: no such bound); MicroPython's heap only (CPython has no mem_free)
        self.reserve = reserve if hasattr(gc, "mem_free") else 0
        self.spill_dir = spill_dir  # None: RAM only
        self.spill_limit = spill_limit  # samples kept in spill files
        self.batch = batch  # samples per request when flushing
        self.dropped = 0
        self._ram = []
        self.unstamped = 0  # RAM samples holding ticks instead of a timestamp
        self._files = None  # the spill files (tbdevice/spill.py, loaded only when configured)
        if spill_dir:
            from tbdevice.spill import Spill

            self._files = Spill(self, spill_dir, spill_limit)

    def __len__(self):
        f = self._files
        return len(self._ram) + (f.count if f else 0)

    def put(self, values, ts=None, ticks=None):
        """Queue one sample: ts in epoch ms, or None with the ticks_ms() it was taken at."""
        if ts is None and ticks is not None:
            self._ram.append([None, values, ticks])
            self.unstamped += 1
        else:
            self._ram.append([ts, values])
        if len(self._ram) > self.limit:
            self._overflow()
        elif self.reserve and len(self._ram) > self.batch and self._short():
            # The heap bounds the queue, not the limit: a quarter of it goes, so that a queue
            # the heap has outgrown shrinks until there is room again. Never below one batch:
            # in a heap that is short anyway, the queue is not what fills it, and the samples
            # of a link that works must still go out.
            k = len(self._ram) // 4
            while k and self._ram:
                self._overflow()
                k -= 1

    def _short(self):
        # Less than `reserve` free even once the garbage is collected (collected only then).
        if gc.mem_free() >= self.reserve:
            return False
        gc.collect()
        return gc.mem_free() < self.reserve

    def stamp(self, epoch_ms, ticks_ms, diff):
        """The clock is set now (epoch_ms at ticks_ms): give the RAM samples that hold
        ticks their timestamps. diff is time.ticks_diff."""
        for it in self._ram:
            if len(it) == 3:
                it[0] = epoch_ms - diff(ticks_ms, it.pop())
        self.unstamped = 0

    def _overflow(self):
        if self._files:
            try:
                self._files.spill(self._ram)
                self._ram = []
                self.unstamped = 0  # ticks mean nothing after a reboot: spilled ones go without ts
                return
            except OSError:
                pass  # no space: fall back to dropping from RAM
        self._forget(self._ram.pop(0))
        self.dropped += 1

    def _forget(self, it):
        if len(it) == 3:
            self.unstamped -= 1

    def peek(self):
        """The oldest samples, up to `batch`, as [[ts, values], ...]."""
        f = self._files
        if f and f.segments:
            return f.peek(self.batch)
        return self._ram[: self.batch]

    def pop(self, k):
        """Forget the k oldest samples (those peek() returned and the server took)."""
        f = self._files
        if f and f.segments:
            f.pop(k)
        else:
            for it in self._ram[:k]:
                self._forget(it)
            del self._ram[:k]

    async def flush(self, send):
        """Send everything queued, oldest first: `await send(items)` per batch, where
        items is a list of {"ts", "values"} (or plain values when no ts was known); send
        may take fewer, the oldest, and return how many (None: all). An exception from
        send leaves the rest queued and propagates."""
        sent = 0
        while len(self):
            items = self.peek()
            if not items:  # an unreadable spill file: skip it
                self._files.drop_first()
                continue
            k = await send([it[1] if it[0] is None else {"ts": it[0], "values": it[1]} for it in items])
            k = len(items) if k is None else k
            self.pop(k)
            sent += k
        return sent
