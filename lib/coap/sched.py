# The one place lib/coap looks below asyncio's public API (MicroPython's asyncio.core), for
# two things nothing public offers cheaply:
# - idle_ms(): how long the inline wait (coap.endpoint) may block before another task is
#   due. The run queue is asyncio.core._task_queue, a heap ordered by each task's ph_key
#   (the ticks it is due at). Without it the client always yields to asyncio at once: about
#   three times the instructions per message, never wrong.
# - receive(): a receive task that waits until its socket is readable without reading it,
#   as asyncio's own streams do (asyncio.core._io_queue), allocating nothing but what
#   asyncio's wait takes (its record of the wait, the poll entry), and undoing a wait that
#   found no heap for those (unjam()). The public way, a StreamReader's read(0), allocates
#   more per wait and loads asyncio.stream: about 1 KB more heap on a 32-bit board.
# `internals` False (the tests run the CoAP suite that way too) takes the public ways.
import asyncio
import select
from time import ticks_diff, ticks_ms

_core = getattr(asyncio, "core", None)
internals = hasattr(_core, "_task_queue") and hasattr(_core, "_io_queue")


def idle_ms(limit):
    """Milliseconds, at most limit, the caller may block the event loop: until the next
    other task is due, 0 when one is ready."""
    if not internals:
        return 0
    t = _core._task_queue.peek()  # looked up per call: new_event_loop() replaces it
    if t is None:
        return limit
    d = ticks_diff(t.ph_key, ticks_ms())
    return d if d < limit else limit


def receive(sock, read_one):
    """The body of a receive task: read_one() whenever sock is readable (an empty socket is
    never read: a would-block recv() costs an exception and a buffer of the size asked
    for); after it returns False (no heap for the datagram), a 10 ms pause."""
    ready = None if internals else asyncio.StreamReader(sock)
    while True:
        if ready is None:
            # The protocol of asyncio's own streams: yielding the IO queue's wait suspends
            # the task until sock is readable.
            q = _core._io_queue  # looked up per wait, as _task_queue
            try:
                q.queue_read(sock)
            except MemoryError:
                unjam(q, sock)
                yield from asyncio.sleep_ms(10)
                continue
            yield
        else:
            yield from ready.read(0)  # reads nothing: py/stream.c makes no call for 0 bytes
        if not read_one():
            yield from asyncio.sleep_ms(10)


def unjam(q, sock):
    """Undo a wait on sock that failed for want of heap (q: asyncio's IO queue). asyncio
    records the wait in its map, then registers sock with its poll object; MicroPython
    1.28's poll.register() that runs out of heap leaves an empty entry in the poll set,
    which the next poll() (and, on the unix port, unregister()) dereferences: a crash (a
    hard fault on a board) where a MemoryError was due (extmod/modselect.c: "This case is
    not handled"). Registering again fills the entry (the map's record, dropped first, is
    the heap it needs); where even that finds no heap, a board's unregister() still
    removes the entry. The receive task is the only one that waits on sock, so nothing
    else of asyncio's is undone."""
    q.map.pop(id(sock), None)
    try:
        q.poller.register(sock, select.POLLIN)
    except MemoryError:
        pass  # the entry stays empty: unregister() below removes it (on a board)
    q.poller.unregister(sock)
