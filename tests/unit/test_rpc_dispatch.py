# The RPC dispatcher: one reply per id, errors as replies (CPython; the unix port runs the
# same through the integration tests).
import asyncio

from tbdevice.rpc import RpcDispatcher


def _run(coro):
    return asyncio.run(coro)


def test_dispatch_plain_async_unknown_raising_and_repeat():
    d = RpcDispatcher()
    calls = []

    def plain(p):
        calls.append(p)
        return {"ok": p}

    async def later(p):
        await asyncio.sleep(0)
        return p * 2

    def boom(p):
        raise ValueError("bad pin")

    d.on("plain", plain)
    d.on("later", later)
    d.on("boom", boom)
    assert _run(d.handle({"id": 1, "method": "plain", "params": 3})) == {"ok": 3}
    assert _run(d.handle({"id": 2, "method": "later", "params": 4})) == {"result": 8}
    assert _run(d.handle({"id": 3, "method": "nope"})) == {"error": "unknown method: nope"}
    assert _run(d.handle({"id": 4, "method": "boom", "params": 1})) == {"error": "ValueError: bad pin"}
    # the same id again (re-sent after a re-subscription): the cached reply, not a second run
    assert _run(d.handle({"id": 1, "method": "plain", "params": 3})) == {"ok": 3}
    assert calls == [3] and d.repeats == 1 and d.handled == 4 and d.errors == 2
