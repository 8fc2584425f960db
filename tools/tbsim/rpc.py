"""Server-side RPC lifecycle (spec §7) and the built-in client-side RPC rule chain (spec §8).

Status names follow ThingsBoard's RpcStatus: QUEUED, SENT, DELIVERED, SUCCESSFUL, TIMEOUT, EXPIRED, FAILED.
"""

import asyncio

from . import jsontypes, protomode
from .log import short
from .observe import RPC
from .store import now_ms

_FINAL = ("SUCCESSFUL", "EXPIRED", "FAILED")


def client_rpc(method, params):
    """A rule chain with an "RPC call reply" node for a few methods (spec §8). Returns
    (delay_seconds, reply_json_text), or None when the rule chain does not answer (the default root rule chain)."""
    if method == "getCurrentTime":
        return 0.0, jsontypes.dumps({"time": now_ms()})
    if method == "echo":
        return 0.0, jsontypes.dumps(params)
    if method == "delay":
        # tbsim extension: answer after params.ms milliseconds (to exercise the slow-core path of §3).
        ms = params.get("ms", 1000) if isinstance(params, dict) else 1000
        try:
            seconds = max(0.0, min(float(str(ms)), 60000.0)) / 1000.0
        except ValueError:
            seconds = 1.0
        return seconds, jsontypes.dumps(params)
    return None


class RpcService:
    def __init__(self, store, observe, log, ack_timeout=10.0, max_retries=5):
        self.store = store
        self.observe = observe
        self.log = log
        self.ack_timeout = ack_timeout   # transport.coap paging_transmission_window / psm timer (spec §7)
        self.max_retries = max_retries   # actors.rpc.max_retries
        self.waiters = {}                # rpc id -> Future resolved with the record when it completes
        self.timers = {}                 # rpc id -> TimerHandle of the delivery timeout
        self.http_waiters = {}           # device_id -> [Future] of HTTP rpc long polls (spec §15)
        self.power = None                # power.PowerSaving (spec §13)
        self.mqtt = None                 # mqttserver.MqttServer: devices with an MQTT RPC subscription

    # ---- REST side
    async def call(self, device, method, params, oneway, timeout_ms):
        """Create an RPC, push it if the device is subscribed, wait. Returns the final record or None (timeout)."""
        loop = asyncio.get_running_loop()
        rec = self.store.add_rpc(device["id"], method, jsontypes.dumps(params), oneway, now_ms() + timeout_ms)
        fut = loop.create_future()
        self.waiters[rec["id"]] = fut
        self.send_to_device(rec)
        try:
            return await asyncio.wait_for(fut, timeout_ms / 1000.0)
        except asyncio.TimeoutError:
            cur = self.store.rpc(rec["id"])
            if cur is not None and cur["status"] not in _FINAL:
                self.store.set_rpc(rec["id"], status="EXPIRED")
            return None
        finally:
            self.waiters.pop(rec["id"], None)
            self._cancel_timer(rec["id"])

    def submit_persistent(self, device, method, params, oneway, timeout_ms):
        rec = self.store.add_rpc(device["id"], method, jsontypes.dumps(params), oneway, now_ms() + timeout_ms)
        self.send_to_device(rec)
        return rec

    # ---- device side
    def send_pending(self, device_id):
        """After an RPC subscription: push every pending RPC, with its original id (spec §7)."""
        for rec in self.store.pending_rpcs(device_id):
            self.send_to_device(rec)

    def send_to_device(self, rec):
        if self.mqtt is not None and self.mqtt.send_rpc(rec):
            return
        rel = self.observe.get(rec["device_id"], RPC)
        if rel is None:
            self._to_http_poll(rec)
            return  # otherwise stays QUEUED until the device subscribes
        if self.power is not None and not self.power.allowed(rec["device_id"]):
            # Not sent outside the downlink window; re-sent with the pending ones when it wakes (spec §13).
            self.power.hold_rpc(rec["device_id"])
            self.log.coap(rel.peer, "CON" if rel.con else "NON", "NOTIFY", "rpc", rel.device_name, rec["method"],
                          "held: device asleep (power saving)")
            return
        if rel.proto is not None:  # merged into the profile's RPC request message (spec §11.3)
            try:
                payload = protomode.rpc_request(rel.proto, rec)
            except protomode.ConvertError as exc:
                return self._unconvertible(rel, rec, exc)
        else:
            params = jsontypes.to_python(jsontypes.JSON, rec["params"])
            payload = jsontypes.dumps({"id": rec["seq"], "method": rec["method"], "params": params}).encode()
        rid = rec["id"]
        if rel.con:
            self._cancel_timer(rid)
            loop = asyncio.get_running_loop()
            self.timers[rid] = loop.call_later(self.ack_timeout, self._timeout, rid)
            how = self.observe.notify(rel, payload, on_ack=lambda: self._delivered(rid),
                                      on_fail=lambda: self._timeout(rid))
            self.store.set_rpc(rid, status="SENT")
        else:
            how = self.observe.notify(rel, payload, on_fail=lambda: self._timeout(rid))
            self._delivered(rid)  # NON: DELIVERED as soon as it is sent
        self.log.coap(rel.peer, "CON" if rel.con else "NON", "NOTIFY", "rpc", rel.device_name, payload,
                      "2.05 Observe=%d %s" % (rel.counter - 1, how))

    def fail(self, rec, error):
        """The RPC cannot be sent (a protobuf schema it does not fit): the caller gets an error reply."""
        rec = self.store.set_rpc(rec["id"], status="FAILED", response=jsontypes.dumps({"error": error}))
        self._resolve(rec)
        return rec

    def mark_sent(self, rid):
        """Sent at QoS 1 over MQTT: SENT until the device's PUBACK, TIMEOUT after ack_timeout (spec-mqtt §7)."""
        self._cancel_timer(rid)
        self.timers[rid] = asyncio.get_running_loop().call_later(self.ack_timeout, self._timeout, rid)
        self.store.set_rpc(rid, status="SENT")

    def mark_delivered(self, rid):
        self._delivered(rid)

    def _unconvertible(self, rel, rec, exc):
        # An error reply to the RPC, and the device's RPC subscription is cancelled (spec §7, §11.3).
        rec = self.fail(rec, str(exc))
        self.log.line("rpc %s id %d: does not fit the profile's protobuf schema: %s" % (rec["method"], rec["seq"], exc))
        self.observe.cancel(rel, "RPC not convertible to the profile's protobuf schema")

    def _to_http_poll(self, rec):
        waiters = self.http_waiters.get(rec["device_id"], [])
        while waiters:
            fut = waiters.pop(0)
            if not fut.done():
                fut.set_result(rec)
                return

    def http_poll_now(self, device_id):
        """The first pending RPC not yet delivered, for an HTTP poll (spec §15), or None."""
        for rec in self.store.pending_rpcs(device_id):
            if rec["status"] != "DELIVERED":
                return rec
        return None

    def http_delivered(self, rec):
        self._delivered(rec["id"])  # marked DELIVERED when the poll returns it (spec §15)

    def _cancel_timer(self, rid):
        handle = self.timers.pop(rid, None)
        if handle is not None:
            handle.cancel()

    def _delivered(self, rid):
        self._cancel_timer(rid)
        rec = self.store.rpc(rid)
        if rec is None or rec["status"] in _FINAL:
            return
        if rec["oneway"]:
            rec = self.store.set_rpc(rid, status="SUCCESSFUL")  # a one-way RPC completes on delivery
            self._resolve(rec)
        else:
            self.store.set_rpc(rid, status="DELIVERED")

    def _timeout(self, rid):
        self._cancel_timer(rid)
        rec = self.store.rpc(rid)
        if rec is None or rec["status"] not in ("SENT", "QUEUED"):
            return
        retries = rec["retries"] + 1
        if retries > self.max_retries:
            rec = self.store.set_rpc(rid, status="FAILED", retries=retries)
            self._resolve(rec)
        else:
            # Stays pending; re-sent with the same id when the device subscribes again (spec §7).
            self.store.set_rpc(rid, status="TIMEOUT", retries=retries)
        self.log.line("rpc %s id %d delivery TIMEOUT (retry %d)" % (rec["method"], rec["seq"], retries))

    def reply(self, device_id, seq, body_text):
        """POST rpc/{id}: forwarded verbatim as the result; unknown ids are only logged (spec §7)."""
        rec = self.store.rpc_by_seq(device_id, seq)
        if rec is None or rec["status"] in _FINAL:
            return False
        self._cancel_timer(rec["id"])
        rec = self.store.set_rpc(rec["id"], status="SUCCESSFUL", response=body_text)
        self._resolve(rec)
        return True

    def _resolve(self, rec):
        fut = self.waiters.get(rec["id"])
        if fut is not None and not fut.done():
            fut.set_result(rec)

    def describe(self, rec):
        return "%s(%s)" % (rec["method"], short(rec["params"], 60))
