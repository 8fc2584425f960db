# The reference app's sender (firmware/forward.py) and the link supervisor at the heap's edge and
# after an outage, shared by pytest (CPython: they run on MicroPython's asyncio, so there they
# return at once) and tests/mpy_unit.py (unix port).
import asyncio
import json


def _micropython():
    return hasattr(asyncio, "sleep_ms")


class _Hal:
    def epoch_ms(self):
        return 1765000000000


class _App:
    """What a Forwarder uses of the App; device is set by each test."""

    def __init__(self, log):
        self.log = log
        self.hal = _Hal()
        self.ok = "2.01"
        self.sent = 0
        self.ota = None
        self.device = None


class _Device:
    def __init__(self):
        self.bodies = []
        self.supervisor = self

    async def send_telemetry(self, values, ts=None):
        self.bodies.append(values if ts is None else {"ts": ts, "values": values})

    def accepted(self):
        pass


def _forwarder(cfg=None, log=None):
    from forward import Forwarder

    app = _App(log)
    app.device = _Device()
    c = {"state_dir": "build", "queue": {"gap_ms": 0}}
    c.update(cfg or {})
    return Forwarder(app, c), app


def test_a_catch_up_batch_fits_one_coap_block():
    # 16 samples with timestamps are about 1,090 bytes: above one block (1024) they would go
    # block-wise, whose modules then stay in the heap. Each batch is cut to what fits.
    if not _micropython():
        return
    f, app = _forwarder()
    for i in range(40):
        f.queue.put({"temperature": 21.5 + i / 100, "humidity": 40.25}, 1765000000000 + i * 100)
    assert asyncio.run(f.flush()) is None
    batches = [b for b in app.device.bodies if type(b) is list]
    assert sum(len(b) for b in batches) + len(app.device.bodies) - len(batches) == 40
    assert all(len(json.dumps(b, separators=(",", ":"))) <= 1024 for b in batches), [len(b) for b in batches]
    assert len(batches[0]) > 10  # as many as fit, not one by one
    sent = [it["values"]["temperature"] for b in app.device.bodies for it in (b if type(b) is list else [b])]
    assert sent == [21.5 + i / 100 for i in range(40)]  # all of them, in order
    f, app = _forwarder({"coap": {"block_size": 512}})
    for i in range(20):
        f.queue.put({"temperature": 21.5, "humidity": 40.25}, 1765000000000 + i * 100)
    asyncio.run(f.flush())
    assert all(len(json.dumps(b, separators=(",", ":"))) <= 512 for b in app.device.bodies if type(b) is list)


def test_the_sender_outlives_a_heap_with_no_room():
    # A MemoryError in a round of the sender outside the send (here: formatting its "retrying"
    # line after a timeout) used to end its task, and what was queued stayed queued for good. It
    # goes on, and sends once there is room.
    if not _micropython():
        return
    from tbdevice import errors

    said = []

    def log(text):
        if "retrying" in text and not said:
            said.append("raised")
            raise MemoryError("memory allocation failed, allocating 112 bytes")
        said.append(text)

    f, app = _forwarder(log=log)
    sends = app.device.send_telemetry

    async def first_times_out(values, ts=None):
        app.device.send_telemetry = sends
        raise errors.Timeout("no ACK")

    app.device.send_telemetry = first_times_out
    f.queue.put({"temperature": 21.5}, 1765000000000)
    f.queue.put({"temperature": 22.5}, 1765000000100)

    async def main():
        t = asyncio.create_task(f.run())
        for _ in range(500):  # the sender's own retry comes after 1 s
            if not len(f.queue):
                break
            await asyncio.sleep_ms(10)
        t.cancel()

    asyncio.run(main())
    assert not len(f.queue), said
    assert said[0] == "raised" and said[-1] == "telemetry: 2 queued samples -> 2.01 (0 left)", said
    assert app.device.bodies == [[{"ts": 1765000000000, "values": {"temperature": 21.5}},
                                  {"ts": 1765000000100, "values": {"temperature": 22.5}}]]


def test_the_supervisor_outlives_a_heap_with_no_room():
    # A MemoryError in a round of the link supervisor (a re-open, a probe) used to end its task:
    # the link was never repaired again, and a board's watchdog, fed by that task, starved.
    if not _micropython():
        return
    from tbdevice.supervisor import Supervisor

    class Link:
        token = "t"
        basic = None
        opens = 0

        async def open(self):
            Link.opens += 1
            if Link.opens == 1:
                raise MemoryError("memory allocation failed, allocating 1296 bytes")

        def heard(self):
            return None

        def drop(self):
            pass

    said = []
    sup = Supervisor(Link(), log=said.append)

    async def main():
        sup.start()
        await asyncio.wait_for_ms(sup.link_up(), 10000)  # the task's own retry comes after 1 s
        await sup.stop()

    asyncio.run(main())
    assert sup.up and Link.opens == 2
    assert said == ["supervisor: out of memory; going on in 1 s"], said
