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


def test_a_raising_handler_is_reported_with_its_method():
    failed = []
    d = RpcDispatcher(lambda method, e: failed.append((method, str(e))))

    async def bad_async(p):
        await asyncio.sleep(0)
        raise KeyError("pin")

    d.on("plain", lambda p: 1 // 0)
    d.on("async", bad_async)
    assert _run(d.handle({"id": 1, "method": "plain"}))["error"].startswith("ZeroDivisionError")
    assert _run(d.handle({"id": 2, "method": "async"}))["error"].startswith("KeyError")
    assert _run(d.handle({"id": 3, "method": "nope"}))["error"] == "unknown method: nope"  # not a handler's fault
    assert [m for m, _ in failed] == ["plain", "async"] and d.failures == 2 and d.errors == 3


def test_a_reply_that_cannot_be_encoded_is_replaced_by_an_error():
    d = RpcDispatcher()
    d.on("obj", lambda p: object())
    reply = _run(d.handle({"id": 7, "method": "obj"}))
    assert "result" in reply
    err = d.refused(7, "obj", ValueError("'result': object is not a JSON value"))
    assert err == {"error": "ValueError: 'result': object is not a JSON value"}
    assert _run(d.handle({"id": 7, "method": "obj"})) == err  # a re-sent id gets the error again
    assert d.failures == 1
