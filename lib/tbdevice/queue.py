# Store and forward for telemetry: while the server cannot be reached, samples wait here
# with their client timestamps, in a bounded RAM queue that spills to files under
# state_dir, and go out in order once the link is back. When the bounds are reached the
# oldest samples go first, and `dropped` counts them (the app reports that count).
#
# Sending again after a timeout can deliver a sample twice when only the answer was lost;
# each sample carries its timestamp, and ThingsBoard keeps one value per (key, ts), so a
# second copy overwrites the first with the same value.
#
# A sample taken while the clock is not set yet keeps its ticks_ms() instead; stamp()
# turns those into epoch milliseconds once the clock is set. One that is sent (or was
# spilled to a file, or survived a reboot) before that goes without ts: the server
# stamps it on arrival (spec §5).
import json
import os


class TelemetryQueue:
    def __init__(self, limit=64, spill_dir=None, spill_limit=2048, batch=16):
        self.limit = limit  # samples kept in RAM
        self.spill_dir = spill_dir  # None: RAM only
        self.spill_limit = spill_limit  # samples kept in spill files
        self.batch = batch  # samples per request when flushing
        self.dropped = 0
        self._ram = []
        self._segments = []  # spill file numbers, oldest first
        self._spilled = 0
        self._next = 0
        self.unstamped = 0  # RAM samples holding ticks instead of a timestamp
        if spill_dir:
            self._recover()

    def __len__(self):
        return len(self._ram) + self._spilled

    def _path(self, n):
        return "%s/tbq-%06d.json" % (self.spill_dir, n)

    def _recover(self):
        # Spill files left by an earlier boot are still to be sent, oldest first.
        try:
            names = os.listdir(self.spill_dir)
        except OSError:
            return
        nums = sorted(int(n[4:10]) for n in names if n.startswith("tbq-") and n.endswith(".json") and len(n) == 15)
        for n in nums:
            k = len(self._load(n))
            if k:
                self._segments.append(n)
                self._spilled += k
        self._next = nums[-1] + 1 if nums else 0

    def _load(self, n):
        try:
            with open(self._path(n)) as f:
                items = json.load(f)
            return items if isinstance(items, list) else []
        except (OSError, ValueError):
            return []  # a torn or foreign file holds nothing we can send

    def put(self, values, ts=None, ticks=None):
        """Queue one sample: ts in epoch ms, or None with the ticks_ms() it was taken at."""
        if ts is None and ticks is not None:
            self._ram.append([None, values, ticks])
            self.unstamped += 1
        else:
            self._ram.append([ts, values])
        if len(self._ram) > self.limit:
            self._overflow()

    def stamp(self, epoch_ms, ticks_ms, diff):
        """The clock is set now (epoch_ms at ticks_ms): give the RAM samples that hold
        ticks their timestamps. diff is time.ticks_diff."""
        for it in self._ram:
            if len(it) == 3:
                it[0] = epoch_ms - diff(ticks_ms, it.pop())
        self.unstamped = 0

    def _overflow(self):
        if self.spill_dir:
            try:
                self._spill()
                return
            except OSError:
                pass  # no space: fall back to dropping from RAM
        self._forget(self._ram.pop(0))
        self.dropped += 1

    def _forget(self, it):
        if len(it) == 3:
            self.unstamped -= 1

    def _spill(self):
        n = self._next
        tmp = self._path(n) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self._ram, f)
        os.rename(tmp, self._path(n))
        self._next += 1
        self._segments.append(n)
        self._spilled += len(self._ram)
        self._ram = []
        self.unstamped = 0  # ticks mean nothing after a reboot: spilled ones go without ts
        while self._spilled > self.spill_limit and len(self._segments) > 1:
            old = self._segments.pop(0)
            k = len(self._load(old))
            self._remove(old)
            self._spilled -= k
            self.dropped += k

    def _remove(self, n):
        try:
            os.remove(self._path(n))
        except OSError:
            pass

    def peek(self):
        """The oldest samples, up to `batch`, as [[ts, values], ...]."""
        if self._segments:
            return self._load(self._segments[0])[: self.batch]
        return self._ram[: self.batch]

    def pop(self, k):
        """Forget the k oldest samples (those peek() returned and the server took)."""
        if self._segments:
            n = self._segments[0]
            rest = self._load(n)[k:]
            if rest:
                with open(self._path(n), "w") as f:
                    json.dump(rest, f)
            else:
                self._segments.pop(0)
                self._remove(n)
            self._spilled -= k
        else:
            for it in self._ram[:k]:
                self._forget(it)
            del self._ram[:k]

    async def flush(self, send):
        """Send everything queued, oldest first: `await send(items)` per batch, where
        items is a list of {"ts", "values"} (or plain values when no ts was known). An
        exception from send leaves the rest queued and propagates."""
        sent = 0
        while len(self):
            items = self.peek()
            if not items:  # an unreadable spill file: skip it
                self._drop_segment()
                continue
            await send([it[1] if it[0] is None else {"ts": it[0], "values": it[1]} for it in items])
            self.pop(len(items))
            sent += len(items)
        return sent

    def _drop_segment(self):
        n = self._segments.pop(0)
        self._remove(n)
        self._spilled = sum(len(self._load(s)) for s in self._segments)
