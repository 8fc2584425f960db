# Store and forward for the reference app (issue 8): sampling is decoupled from sending.
# The sampler puts each sample, with its client timestamp, into a bounded TelemetryQueue
# (RAM, spilling to state_dir when configured); the sender flushes it oldest first in
# batches (a JSON array of {"ts", "values"}, spec §5; one message per sample for protobuf
# profiles, whose telemetry schema is a single message, spec §11) and, while the server
# cannot be reached (no answer, a reset, 5.00) or refuses the credentials (4.01), keeps
# everything and backs off.
#
# Exactly once: a batch whose answer was lost is sent again; ThingsBoard keeps one value
# per (key, ts), so the second copy collapses into the first (tbdevice/queue.py).
import asyncio
import time

from tbdevice import errors
from tbdevice.jsonenc import dumps, plain
from tbdevice.link import backoff
from tbdevice.queue import TelemetryQueue

_LONGEST = 16  # back-off step for refused credentials: retry_max_ms at once
# Heap the queue leaves free, whatever its limit (tbdevice/queue.py): room for what brings the
# link back after an outage (a reconnect, a probe, the first batch) and for the app.
_RESERVE = 8192


class Forwarder:
    """`app` gives device (tbdevice.Device), hal (epoch_ms), log and ota."""

    def __init__(self, app, cfg):
        q = cfg.get("queue") or {}
        self.app = app
        batch = 1 if cfg.get("payload") == "protobuf" else q.get("batch", 16)
        spill = cfg["state_dir"] if q.get("spill") else None
        self.queue = TelemetryQueue(q.get("limit", 64), spill, q.get("spill_limit", 2048), batch, _RESERVE)
        # A batch's body stays within one CoAP block: a bigger one goes block-wise (RFC 7959),
        # whose modules (about 4 KB) would stay in the heap after the first catch-up.
        self.batch_bytes = (cfg.get("coap") or {}).get("block_size", 1024)
        self.gap_ms = q.get("gap_ms", 100)  # between batches while catching up: the server's rate
        self.retry_ms = q.get("retry_ms", 1000)  # first back-off; doubles up to retry_max_ms
        self.retry_max_ms = q.get("retry_max_ms", 30000)
        self.sent = 0  # samples the server took
        self.refused = 0  # samples the server refused (4.xx) or the payload codec could not carry
        self.failures = 0  # flushes that ended without an answer or with the credentials refused (then retried)
        self.unauthorized = False  # the last flush ended with the credentials refused (4.01)
        self.last_error = None
        self._dropped_sent = 0  # the queue_dropped value the server has
        self._tried = 0  # samples in the batch sent last
        self._ev = asyncio.Event()

    def _say(self, text):
        log = self.app.log
        if log:
            log(text)

    # ---- sampling ---------------------------------------------------------------
    def sample(self, values):
        """Queue one sample stamped now; returns its ts (None while the clock is not set:
        the sample keeps its ticks until it is, tbdevice/queue.py). A value JSON cannot
        carry raises ValueError here: the queue keeps JSON, and such a sample could never
        be sent (issue 15)."""
        if not plain(values):  # a float to write with care, or a value of another type
            from tbdevice.jsoncheck import check  # only then: the app's heap does not hold it otherwise

            check(values)
        q = self.queue
        ts = self.app.hal.epoch_ms()
        now = time.ticks_ms()
        if ts is None:
            q.put(values, None, now)
        else:
            if q.unstamped:
                q.stamp(ts, now, time.ticks_diff)
            q.put(values, ts)
        self._ev.set()
        return ts

    # ---- sending ----------------------------------------------------------------
    async def run(self):
        # The sender outlives a heap with no room (a MemoryError anywhere in a round): what
        # is queued stays, and goes once there is room again.
        while True:
            try:
                await self._rounds()
            except MemoryError:
                print("telemetry: out of memory; trying again in 1 s")  # a constant: printed without heap
                await asyncio.sleep_ms(1000)

    async def _rounds(self):
        fails = 0
        q = self.queue
        while True:
            while not len(q) and q.dropped == self._dropped_sent:
                self._ev.clear()
                await self._ev.wait()
            err = await self.flush()
            if err is None:
                fails = 0
                continue
            fails = _LONGEST if self.unauthorized else fails + 1
            wait = backoff(fails, self.retry_ms, self.retry_max_ms)
            self._say("telemetry: %s, %d queued, retrying in %d ms" % (err, len(q), wait))
            await asyncio.sleep_ms(wait)

    async def flush(self):
        """Send what is queued, oldest first. None when all of it went, else why not
        (everything not taken stays queued)."""
        q = self.queue
        sup = self.app.device.supervisor
        self.unauthorized = False
        while True:
            try:
                await q.flush(self._send)
                break
            except (errors.Timeout, errors.ServerError, errors.Unauthorized, MemoryError) as e:
                # No answer, a reset, or 5.00 (what ThingsBoard answers when a rate limit
                # is hit, spec §2.3): the server may take it later. 4.01: the credentials are
                # refused, not the data: keep it until they are fixed (said once). No heap to
                # send with (an update's code beside the app): later too.
                self.failures += 1
                self.last_error = _why(e)
                if isinstance(e, errors.Unauthorized):
                    self.unauthorized = True
                    sup.refused(str(e))
                return self.last_error
            except errors.TbError as e:
                # 4.00, 4.13, another 4.xx, or a value the profile's schema cannot carry: this
                # batch will never be taken. Drop it (counted) rather than block everything
                # behind it.
                k = self._tried
                q.pop(k)
                self.refused += k
                self.last_error = _why(e)
                self._say("telemetry: %d samples refused: %s" % (k, self.last_error))
        sup.accepted()  # taken: the credentials are good (again)
        if q.dropped != self._dropped_sent:
            # The count of samples the bounds pushed out is itself reported (issue 8).
            n = q.dropped
            try:
                await self.app.device.send_telemetry({"queue_dropped": n})
                self._say("telemetry {\"queue_dropped\":%d} -> %s" % (n, self.app.ok))
            except (errors.Timeout, errors.ServerError, errors.Unauthorized) as e:
                self.last_error = _why(e)
                return self.last_error
            except errors.TbError as e:  # e.g. a protobuf schema without the key: say it once
                self._say("telemetry: queue_dropped %d not sent: %s" % (n, _why(e)))
            self._dropped_sent = n
        return None

    def _fit(self, items):
        # How many of items, the oldest first, make a JSON array of at most batch_bytes (one
        # at least). Only when catching up: each item written once more to count it.
        n, size = 0, 1
        for it in items:
            size += len(dumps(it)) + 1
            if size > self.batch_bytes and n:
                break
            n += 1
        return n

    async def _send(self, items):
        """Sends the oldest of items, as many as fit batch_bytes; returns how many."""
        app = self.app
        dev = app.device
        it = items[0]
        if len(items) > 1:
            items = items[:self._fit(items)]
        self._tried = len(items)  # what a refusal drops (flush)
        if len(items) == 1:
            if "ts" in it and "values" in it and len(it) == 2:
                await dev.send_telemetry(it["values"], it["ts"])  # the codec decides how ts goes
                it = it["values"]
            else:
                await dev.send_telemetry(it)
            self._say("telemetry %s -> %s" % (dumps(it), app.ok))
        else:
            await dev.send_telemetry(items)
            left = len(self.queue) - len(items)
            self._say("telemetry: %d queued samples -> %s (%d left)" % (len(items), app.ok, left))
        self.sent += len(items)
        app.sent += len(items)
        if app.ota is not None:
            app.ota.healthy()  # connected and posted: the new image's health check (issue 4)
        if len(self.queue) > len(items) and self.gap_ms:
            await asyncio.sleep_ms(self.gap_ms)
        return len(items)


def _why(e):
    return "%s: %s" % (type(e).__name__, e)
