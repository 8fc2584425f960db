# The one place lib/coap looks below asyncio's public API: how long the inline wait
# (coap.endpoint) may block before another task is due. MicroPython's asyncio keeps its run
# queue in asyncio.core._task_queue, a heap ordered by each task's ph_key (the ticks it is due
# at); nothing public tells. Where that is missing (another asyncio, a release that renames
# it), or `internals` is False, idle_ms() says 0: the client then always yields to asyncio
# at once, which costs about three times the instructions per message and is never wrong.
import asyncio
from time import ticks_diff, ticks_ms

_core = getattr(asyncio, "core", None)
internals = hasattr(_core, "_task_queue")  # the tests run the CoAP suite with False too


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
