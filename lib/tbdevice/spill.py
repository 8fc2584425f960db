# The spill files of a TelemetryQueue (tbdevice/queue.py) with `spill_dir`: a full RAM queue
# is written to state_dir as tbq-NNNNNN.json (atomically: a new file, then a rename), at most
# spill_limit samples in files (the oldest file goes first, counted in the queue's `dropped`),
# and files left by an earlier boot are sent first. Loaded only when spilling is configured.
import json
import os


class Spill:
    def __init__(self, queue, spill_dir, spill_limit):
        self.queue = queue
        self.dir = spill_dir
        self.limit = spill_limit
        self.segments = []  # spill file numbers, oldest first
        self.count = 0  # samples in them
        self._next = 0
        self._recover()

    def _path(self, n):
        return "%s/tbq-%06d.json" % (self.dir, n)

    def _recover(self):
        # Spill files left by an earlier boot are still to be sent, oldest first.
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        nums = sorted(int(n[4:10]) for n in names if n.startswith("tbq-") and n.endswith(".json") and len(n) == 15)
        for n in nums:
            k = len(self._load(n))
            if k:
                self.segments.append(n)
                self.count += k
        self._next = nums[-1] + 1 if nums else 0

    def _load(self, n):
        try:
            with open(self._path(n)) as f:
                items = json.load(f)
            return items if isinstance(items, list) else []
        except (OSError, ValueError):
            return []  # a torn or foreign file holds nothing we can send

    def spill(self, items):
        """items (the RAM queue) into a new file; OSError when it cannot be written."""
        n = self._next
        tmp = self._path(n) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(items, f)
        os.rename(tmp, self._path(n))
        self._next += 1
        self.segments.append(n)
        self.count += len(items)
        while self.count > self.limit and len(self.segments) > 1:
            old = self.segments.pop(0)
            k = len(self._load(old))
            self._remove(old)
            self.count -= k
            self.queue.dropped += k

    def _remove(self, n):
        try:
            os.remove(self._path(n))
        except OSError:
            pass

    def peek(self, batch):
        return self._load(self.segments[0])[:batch]

    def pop(self, k):
        n = self.segments[0]
        rest = self._load(n)[k:]
        if rest:
            with open(self._path(n), "w") as f:
                json.dump(rest, f)
        else:
            self.segments.pop(0)
            self._remove(n)
        self.count -= k

    def drop_first(self):
        # An unreadable file: skipped, and the count made right again.
        self._remove(self.segments.pop(0))
        self.count = sum(len(self._load(s)) for s in self.segments)
