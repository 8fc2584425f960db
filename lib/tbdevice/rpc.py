# Server-side RPC dispatch (spec §7): handlers by method name, plain or async; a reply
# for every request, once. ThingsBoard re-sends a pending RPC with the same id after a
# re-subscription, so replies are remembered by id and re-sent instead of re-running.

_REMEMBER = 8  # replies kept for re-sent ids


def _describe(e):
    return "%s: %s" % (type(e).__name__, e)


class RpcDispatcher:
    def __init__(self):
        self.handlers = {}
        self._ids = []
        self._replies = {}
        self.handled = 0
        self.repeats = 0
        self.errors = 0

    def on(self, method, fn):
        """fn(params) -> result (or a coroutine giving it). A dict result is the reply
        as it is; anything else is sent as {"result": value} (the server takes only a
        JSON object, spec §7)."""
        self.handlers[method] = fn

    def cached(self, rid):
        return self._replies.get(rid)

    async def handle(self, req):
        """The reply for one request {"id", "method", "params"}; never raises."""
        rid = req.get("id")
        if rid in self._replies:
            self.repeats += 1
            return self._replies[rid]
        method = req.get("method")
        fn = self.handlers.get(method)
        if fn is None:
            self.errors += 1
            reply = {"error": "unknown method: %s" % method}
        else:
            try:
                res = fn(req.get("params"))
                if hasattr(res, "send"):  # a coroutine (async def handler)
                    res = await res
                reply = res if isinstance(res, dict) else {"result": res}
            except Exception as e:  # a handler's fault becomes the caller's error reply
                self.errors += 1
                reply = {"error": _describe(e)}
        self.handled += 1
        self._remember(rid, reply)
        return reply

    def _remember(self, rid, reply):
        if rid is None:
            return
        self._ids.append(rid)
        self._replies[rid] = reply
        if len(self._ids) > _REMEMBER:
            self._replies.pop(self._ids.pop(0), None)
