# What the server pushes (spec §6, §7), whatever the link: the link queues each shared-
# attribute update and RPC request; one dispatcher task handles them in arrival order,
# keeps the attribute cache and posts each RPC's reply. Nothing that happens to one message
# ends the loop: a bad update, a failed reply, an application callback or RPC handler that
# raises (logged in one line naming the key or method, counted in `failures`).
import asyncio

from tbdevice.attributes import SharedAttributes
from tbdevice.link import ATTRIBUTE_UPDATE
from tbdevice.rpc import RpcDispatcher

_QUEUE = 16  # updates waiting for the dispatcher; beyond that the oldest is dropped


class Downlink:
    def __init__(self, device):
        self.device = device
        self.attributes = SharedAttributes(self._attribute_failed)
        self.rpc = RpcDispatcher(self._handler_failed)
        self.dropped = 0
        self.errors = 0  # messages lost to an error (a bad update, a reply that could not be sent)
        self._queue = []
        self._ev = asyncio.Event()
        self._task = None

    def _say(self, text):
        if self.device.log:
            self.device.log(text)

    @property
    def failures(self):
        """Application callbacks and RPC handlers that raised."""
        return self.attributes.failures + self.rpc.failures

    # The application's faults: one line each, made only when something logs.
    def _attribute_failed(self, key, e):
        if self.device.log:
            who = "on_attributes callback" if key is None else "on_attribute(%r)" % (key,)
            self._say("attributes: %s raised %s: %s" % (who, type(e).__name__, e))

    def _handler_failed(self, method, e):
        if self.device.log:
            self._say("rpc: %r raised %s: %s" % (method, type(e).__name__, e))

    def start(self, silence_ms=300000):
        # The link delivers to _put; the device's supervisor keeps it registered.
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._dispatch())
        self.device.link.start_downlink(self._put, silence_ms)

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.device.link.stop_downlink()

    @property
    def subscribed(self):
        return self.device.link.subscribed

    def _put(self, kind, payload, initial):
        # Runs in the link's receive path: only queue.
        if len(self._queue) >= _QUEUE:
            self._queue.pop(0)
            self.dropped += 1
        self._queue.append((kind, payload, initial))
        self._ev.set()

    async def _dispatch(self):
        while True:
            while not self._queue:
                self._ev.clear()
                await self._ev.wait()
            kind, payload, initial = self._queue.pop(0)
            try:
                if kind == ATTRIBUTE_UPDATE:
                    self._attributes(payload, initial)
                    if self.attributes.pending:
                        await self._awaited()
                else:
                    await self._rpc(payload)
            except Exception as e:  # whatever it was (a bad update, a failed reply), it costs that message, not the loop
                self.errors += 1
                self._say("downlink: %s: %s" % (type(e).__name__, e))

    def _attributes(self, payload, initial):
        data = self.device.codec.attribute_update(payload)
        # The first answer of each subscription is the whole state (spec §6.2).
        changed, deleted = self.attributes.replace(data) if initial else self.attributes.apply(data)
        if (changed or deleted) and self.device.log:  # no text is made when nobody reads it
            self._say("attributes: %s%s" % (changed, " deleted %s" % deleted if deleted else ""))

    async def _awaited(self):
        # What async attribute callbacks returned, in the order they were called.
        pending = self.attributes.pending
        while pending:
            key, co = pending.pop(0)
            try:
                await co
            except Exception as e:  # the application's fault, as in SharedAttributes._notify
                self.attributes.failed(key, e)

    async def _rpc(self, payload):
        req = self.device.codec.rpc_request(payload)
        rid = req["id"]
        reply = await self.rpc.handle(req)
        try:
            r = self.device.reply_rpc(rid, reply)
        except ValueError as e:
            # The handler returned what the codec cannot encode (raised before anything was
            # sent): the caller gets that error rather than no answer at all.
            reply = self.rpc.refused(rid, req.get("method"), e)
            r = self.device.reply_rpc(rid, reply)
        if self.device.log:
            self._say("rpc %d %s(%s) -> %s" % (rid, req.get("method"), req.get("params"), reply))
        await r
