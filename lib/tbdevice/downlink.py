# What the server pushes (spec §6, §7), whatever the link: the link queues each shared-
# attribute update and RPC request; one dispatcher task handles them in arrival order,
# keeps the attribute cache and posts each RPC's reply.
import asyncio

from tbdevice.attributes import SharedAttributes
from tbdevice.errors import TbError
from tbdevice.link import ATTRIBUTE_UPDATE
from tbdevice.rpc import RpcDispatcher

_QUEUE = 16  # updates waiting for the dispatcher; beyond that the oldest is dropped


class Downlink:
    def __init__(self, device):
        self.device = device
        self.attributes = SharedAttributes()
        self.rpc = RpcDispatcher()
        self.dropped = 0
        self._queue = []
        self._ev = asyncio.Event()
        self._task = None

    def _say(self, text):
        if self.device.log:
            self.device.log(text)

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
                else:
                    await self._rpc(payload)
            except (TbError, OSError, ValueError, KeyError, TypeError) as e:
                # A bad update or a failed reply costs that message, not the loop.
                self._say("downlink: %s: %s" % (type(e).__name__, e))

    def _attributes(self, payload, initial):
        data = self.device.codec.attribute_update(payload)
        # The first answer of each subscription is the whole state (spec §6.2).
        changed, deleted = self.attributes.replace(data) if initial else self.attributes.apply(data)
        if (changed or deleted) and self.device.log:  # no text is made when nobody reads it
            self._say("attributes: %s%s" % (changed, " deleted %s" % deleted if deleted else ""))

    async def _rpc(self, payload):
        req = self.device.codec.rpc_request(payload)
        reply = await self.rpc.handle(req)
        if self.device.log:
            self._say("rpc %d %s(%s) -> %s" % (req["id"], req.get("method"), req.get("params"), reply))
        await self.device.reply_rpc(req["id"], reply)
