# Server-side RPC dispatch (spec §7): handlers by method name, plain or async; a reply
# for every request, once. ThingsBoard re-sends a pending RPC with the same id after a
# re-subscription, so replies are remembered by id and re-sent instead of re-running.
# A handler that raises is the application's fault: its error is the reply, and it is
# reported (report(method, e)); the dispatcher goes on.

_REMEMBER = 8  # replies kept for re-sent ids


def _describe(e):
    return "%s: %s" % (type(e).__name__, e)


class RpcDispatcher:
    def __init__(self, report=None):
        self.report = report
        self.handlers = {}
        self._ids = []
        self._replies = {}
        self.handled = 0
        self.repeats = 0
        self.errors = 0  # error replies: unknown methods and handlers that failed
        self.failures = 0  # handlers that raised (or returned what cannot be encoded)

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
                reply = self._failed(method, e)
        self.handled += 1
        self._remember(rid, reply)
        return reply

    def refused(self, rid, method, e):
        """The reply for a handler whose result could not be encoded (e: the codec's
        ValueError): an error reply instead, remembered for the id in its place."""
        reply = self._failed(method, e)
        if rid in self._replies:
            self._replies[rid] = reply
        return reply

    def _failed(self, method, e):
        self.errors += 1
        self.failures += 1
        if self.report is not None:
            self.report(method, e)
        return {"error": _describe(e)}

    def _remember(self, rid, reply):
        if rid is None:
            return
        self._ids.append(rid)
        self._replies[rid] = reply
        if len(self._ids) > _REMEMBER:
            self._replies.pop(self._ids.pop(0), None)
