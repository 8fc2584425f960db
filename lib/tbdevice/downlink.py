# What the server pushes (spec §6, §7): the shared-attribute and RPC observations of one
# Device, kept registered, and handled in arrival order by one dispatcher task; plus the
# liveness check that pings a silent server and re-opens the link when it does not answer.
import asyncio
import time

from coap import message as m
from coap.errors import CoapError
from coap.observe import Observation
from tbdevice.attributes import SharedAttributes
from tbdevice.errors import TbError
from tbdevice.rpc import RpcDispatcher

_QUEUE = 16  # notifications waiting for the dispatcher; beyond that the oldest is dropped


class Downlink:
    def __init__(self, device, silence_ms=300000, keepalive_ms=30000, ping_timeout_ms=10000):
        self.device = device
        self.silence_ms = silence_ms
        self.keepalive_ms = keepalive_ms
        self.ping_timeout_ms = ping_timeout_ms
        self.attributes = SharedAttributes()
        self.rpc = RpcDispatcher()
        self.dropped = 0
        self.pings = 0
        self._queue = []
        self._ev = asyncio.Event()
        self._obs = []
        self._tasks = []

    def _say(self, text):
        if self.device.log:
            self.device.log(text)

    def start(self):
        if self._tasks:
            return
        d = self.device
        cl = d.client
        # Separate tokens for the two observations: reusing one cancels the other (spec §6.3).
        self._obs = [
            Observation(cl, d._attributes, lambda msg, first: self._put(0, msg, first), (), d.con, self.silence_ms),
            Observation(cl, d._rpc, lambda msg, first: self._put(1, msg, first), (), d.con, self.silence_ms),
        ]
        self._tasks = [asyncio.create_task(o.run()) for o in self._obs]
        self._tasks.append(asyncio.create_task(self._dispatch()))
        if self.keepalive_ms:
            self._tasks.append(asyncio.create_task(self._keepalive()))

    async def stop(self):
        for t in self._tasks:
            t.cancel()
        self._tasks = []
        for o in self._obs:
            try:
                await o.cancel()
            except (CoapError, OSError) as e:
                self._say("unsubscribe: %r" % e)
        self._obs = []

    @property
    def subscribed(self):
        return len(self._obs) == 2 and self._obs[0].active and self._obs[1].active

    def _put(self, kind, msg, first):
        # Runs in the receive loop: only queue.
        if len(self._queue) >= _QUEUE:
            self._queue.pop(0)
            self.dropped += 1
        self._queue.append((kind, msg, first))
        self._ev.set()

    async def _dispatch(self):
        while True:
            while not self._queue:
                self._ev.clear()
                await self._ev.wait()
            kind, msg, first = self._queue.pop(0)
            try:
                if kind == 0:
                    self._attributes(msg, first)
                else:
                    await self._rpc(msg)
            except (CoapError, TbError, OSError, ValueError, KeyError, TypeError) as e:
                # A bad notification or a failed reply costs that message, not the loop.
                self._say("downlink: %s: %s" % (type(e).__name__, e))

    def _attributes(self, msg, first):
        if msg.code != m.CONTENT:
            if msg.code >> 5 != 2:
                self._say("attributes: subscription ended (%s), re-subscribing" % m.code_str(msg.code))
            return
        from tbdevice.device import decode_json

        data = decode_json(msg.payload, "attributes") if msg.payload else {}
        if not isinstance(data, dict):
            raise ValueError("attribute notification is not a JSON object")
        changed, deleted = self.attributes.replace(data) if first else self.attributes.apply(data)
        if changed or deleted:
            self._say("attributes: %s%s" % (changed, " deleted %s" % deleted if deleted else ""))

    async def _rpc(self, msg):
        if msg.code != m.CONTENT or not msg.payload:
            if msg.code >> 5 != 2:
                self._say("rpc: subscription ended (%s), re-subscribing" % m.code_str(msg.code))
            return  # 2.03 Valid opens the RPC subscription (spec §7)
        from tbdevice.device import decode_json

        req = decode_json(msg.payload, "rpc")
        if not isinstance(req, dict) or not isinstance(req.get("id"), int):
            raise ValueError("rpc request without an integer id")
        reply = await self.rpc.handle(req)
        self._say("rpc %d %s(%s) -> %s" % (req["id"], req.get("method"), req.get("params"), reply))
        await self.device.reply_rpc(req["id"], reply)

    async def _keepalive(self):
        # No traffic for keepalive_ms: a CoAP ping (empty CON, §4.3). No answer: re-open
        # the link; the observations notice the new generation and re-register.
        cl = self.device.client
        while True:
            idle = time.ticks_diff(time.ticks_ms(), cl.last_rx)
            if idle < self.keepalive_ms:
                await asyncio.sleep_ms(self.keepalive_ms - idle)
                continue
            self.pings += 1
            if not await cl.ping(self.ping_timeout_ms):
                self._say("keepalive: no answer to a ping, re-opening the link")
                await self.device.reconnect()
            cl.last_rx = time.ticks_ms()
