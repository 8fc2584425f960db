# Store and forward (CPython and unix port): order, bounds, spill files, recovery after a
# reboot, and a failed send that loses nothing.
import asyncio
import os

from tbdevice.queue import TelemetryQueue


def _tmpdir(tag):
    d = "/tmp/tbq-test-%s-%d" % (tag, os.getpid() if hasattr(os, "getpid") else 0)
    try:
        os.mkdir(d)
    except OSError:
        pass
    _empty(d)
    return d


def _empty(d, remove=False):
    for n in os.listdir(d):
        os.remove(d + "/" + n)
    if remove:
        os.rmdir(d)


class Sink:
    def __init__(self, fail_after=None):
        self.got = []
        self.fail_after = fail_after

    async def send(self, items):
        if self.fail_after is not None and len(self.got) >= self.fail_after:
            raise OSError(113)
        self.got.extend(items)


def _flush(q, sink):
    return asyncio.run(q.flush(sink.send))


def test_ram_only_keeps_order_and_drops_oldest():
    q = TelemetryQueue(limit=5, batch=2)
    for i in range(8):
        q.put({"i": i}, 1000 + i)
    assert len(q) == 5 and q.dropped == 3
    s = Sink()
    assert _flush(q, s) == 5
    assert [x["values"]["i"] for x in s.got] == [3, 4, 5, 6, 7]
    assert s.got[0] == {"ts": 1003, "values": {"i": 3}}
    assert len(q) == 0


def test_no_timestamp_sends_plain_values():
    q = TelemetryQueue()
    q.put({"a": 1})
    s = Sink()
    _flush(q, s)
    assert s.got == [{"a": 1}]


def test_failed_send_loses_nothing():
    q = TelemetryQueue(limit=10, batch=3)
    for i in range(7):
        q.put({"i": i}, i)
    s = Sink(fail_after=3)
    try:
        _flush(q, s)
        assert False
    except OSError:
        pass
    assert len(q) == 4
    s.fail_after = None
    _flush(q, s)
    assert [x["ts"] for x in s.got] == list(range(7))


def test_spill_to_files_in_order_and_bounded():
    d = _tmpdir("spill")
    q = TelemetryQueue(limit=4, spill_dir=d, spill_limit=8, batch=3)
    for i in range(20):
        q.put({"i": i}, i)
    # RAM holds the newest <= 4, files the rest, bounded to ~8: the oldest were dropped
    assert q.dropped > 0 and len(q) + q.dropped == 20
    s = Sink()
    _flush(q, s)
    ts = [x["ts"] for x in s.got]
    assert ts == sorted(ts) and ts[-1] == 19 and len(ts) == 20 - q.dropped
    assert [n for n in os.listdir(d) if n.startswith("tbq-")] == []


def test_spilled_samples_survive_a_reboot():
    d = _tmpdir("reboot")
    q = TelemetryQueue(limit=3, spill_dir=d, batch=5)
    for i in range(7):
        q.put({"i": i}, i)
    # the 4th sample spilled 0-3 to a file; 4-6 were in RAM and go with the reboot
    q2 = TelemetryQueue(limit=3, spill_dir=d, batch=5)
    assert len(q2) == 4
    s = Sink()
    _flush(q2, s)
    assert [x["ts"] for x in s.got] == [0, 1, 2, 3]


def test_partial_flush_of_a_spill_file_resumes_after_reboot():
    d = _tmpdir("resume")
    q = TelemetryQueue(limit=4, spill_dir=d, batch=2)
    for i in range(5):
        q.put({"i": i}, i)
    s = Sink(fail_after=2)
    try:
        _flush(q, s)
    except OSError:
        pass
    assert [x["ts"] for x in s.got] == [0, 1]
    q2 = TelemetryQueue(limit=4, spill_dir=d, batch=2)
    s2 = Sink()
    _flush(q2, s2)
    assert [x["ts"] for x in s2.got] == [2, 3, 4]


def _diff(a, b):
    return a - b


def test_samples_without_a_clock_keep_ticks_and_are_stamped_once_it_is_set():
    q = TelemetryQueue(limit=3, batch=10)
    q.put({"i": 0}, None, 1000)
    q.put({"i": 1}, None, 1500)
    q.put({"i": 2})  # neither: goes without ts
    assert q.unstamped == 2
    q.put({"i": 3}, None, 2000)  # the oldest (ticks 1000) is dropped
    assert q.unstamped == 2 and q.dropped == 1
    q.stamp(1700000003000, 3000, _diff)  # the clock is set: epoch 1700000003000 at ticks 3000
    assert q.unstamped == 0
    s = Sink()
    _flush(q, s)
    assert s.got == [{"ts": 1700000001500, "values": {"i": 1}}, {"i": 2}, {"ts": 1700000002000, "values": {"i": 3}}]


def test_unstamped_samples_spilled_go_without_ts():
    d = _tmpdir("ticks")
    q = TelemetryQueue(limit=2, spill_dir=d, batch=10)
    for i in range(3):
        q.put({"i": i}, None, i)
    assert q.unstamped == 0  # spilled: ticks would mean nothing after a reboot
    s = Sink()
    _flush(q, s)
    assert s.got == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_store_and_forward_refuses_a_sample_json_cannot_carry():
    # Issue 15 item 7: such a sample could never be sent (nor spilled); the sampler's call
    # raises, and nothing is queued.
    import time

    from forward import Forwarder

    class App:
        class hal:
            @staticmethod
            def epoch_ms():
                return 1700000000000

    f = Forwarder(App(), {})
    for bad in ({"t": object()}, {"t": 1.5, "raw": b"\x01"}):
        try:
            f.sample(bad)
        except ValueError as e:
            assert "'t'" in str(e) or "'raw'" in str(e), e
        else:
            assert False, bad
    assert len(f.queue) == 0
    if hasattr(time, "ticks_ms"):  # the unix port: a good sample still goes in
        f.sample({"t": 1.5})
        assert len(f.queue) == 1


def test_no_heap_to_send_keeps_the_sample_for_later():
    # A MemoryError while sending (an update's code beside the app filled the heap) is a
    # failure to retry, as no answer is: the sender backs off and the sample stays queued.
    from forward import Forwarder

    class Device:
        class supervisor:
            @staticmethod
            def accepted():
                pass

        fail = True

        async def send_telemetry(self, values, ts=None):
            if self.fail:
                raise MemoryError("memory allocation failed, allocating 104 bytes")

    class App:
        device = Device()
        log = None
        ok = "2.01"
        sent = 0
        ota = None

        class hal:
            @staticmethod
            def epoch_ms():
                return 1700000000000

    app = App()
    f = Forwarder(app, {"state_dir": "/tmp"})
    f.queue.put({"t": 21.5}, 1700000000000)  # what sample() puts (it needs the port's ticks)
    why = asyncio.run(f.flush())
    assert why and "MemoryError" in why, why
    assert len(f.queue) == 1 and f.failures == 1
    app.device.fail = False
    assert asyncio.run(f.flush()) is None
    assert len(f.queue) == 0 and f.sent == 1


def test_zz_cleanup():
    # runs last (tests run in name order): leave nothing in /tmp
    for tag in ("spill", "reboot", "resume", "ticks", "unstamped"):
        d = "/tmp/tbq-test-%s-%d" % (tag, os.getpid() if hasattr(os, "getpid") else 0)
        try:
            _empty(d, remove=True)
        except OSError:
            pass


def test_a_reserve_the_heap_cannot_keep_sheds_the_oldest_quarter():
    # A limit too large for the board: during an outage the queue would take the whole heap,
    # and nothing (a reconnect, a probe, the flush) would find room to bring the link back.
    import gc

    if not hasattr(gc, "mem_free"):
        return  # CPython: the reserve is MicroPython's heap
    q = TelemetryQueue(limit=100, batch=4)
    for i in range(12):
        q.put({"n": i}, 1000 + i)
    q.reserve = 1 << 30  # more than any heap has free: short from now on
    q.put({"n": 12}, 1012)
    assert len(q) == 10 and q.dropped == 3 and q.peek()[0] == [1003, {"n": 3}]
    for i in range(13, 40):
        q.put({"n": i}, 1000 + i)
    assert len(q) == 6 and q.peek()[0] == [1034, {"n": 34}]  # shrunk to what a quarter leaves, the newest kept
    q.reserve = 1
    n = len(q)
    q.put({"n": 40}, 1040)
    assert len(q) == n + 1
    # a queue that works is never cut below a batch: in a heap short anyway its samples must go out
    q = TelemetryQueue(limit=100, batch=4, reserve=1 << 30)
    for i in range(4):
        q.put({"n": i}, 1000 + i)
    assert len(q) == 4 and q.dropped == 0
