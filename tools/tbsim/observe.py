"""Observe relations (RFC 7641) as ThingsBoard + Californium keep them (spec §6.2-§6.4, §7).

- A relation is keyed by (peer, token); a new registration with the same key silently replaces the old one
  (CF ObserveManager). Per device there is one attribute and one RPC relation; a new one with another token
  replaces the old and the old token is sent 2.02 Deleted (DefaultCoapClientContext.registerFeatureObservation).
- Observe numbers come from a per-relation counter starting at 0 (TbCoapObservationState.observeCounter).
- Notifications have the registration's type and a random MID in [0, 64999].
- At most one CON notification in flight per relation; a newer one waits and replaces an older waiting one;
  on retransmission the newest waiting one is sent instead (CF ObserveLayer.NotificationController).
- RST to a notification cancels that relation; a CON notification never acknowledged cancels every relation
  of that peer (CF ObserveLayer ... onTimeout -> cancelAll).
"""

from aiocoap.message import Message
from aiocoap.numbers import Code

ATTRIBUTES = "attributes"
RPC = "rpc"


class Relation:
    def __init__(self, exchange, device, kind):
        self.peer = exchange.peer
        self.token = exchange.request.token
        self.con = exchange.con
        self.device_id = device["id"]
        self.device_name = device["name"]
        self.kind = kind
        cf = exchange.request.opt.content_format
        # TbCoapContentFormatUtil: JSON echoes the request's Content-Format, else 50 (spec §4).
        self.content_format = int(cf) if cf is not None else 50
        self.proto = None  # protomode.ProtoProfile of a PROTOBUF profile: payloads are converted (spec §11)
        self.counter = 0
        self.in_flight = None
        self.waiting = None
        self.active = True

    def next_observe(self):
        n = self.counter
        self.counter += 1
        return n & 0xFFFFFF


class ObserveManager:
    def __init__(self, endpoint, log):
        self.ep = endpoint
        self.log = log
        self.relations = {}   # (peer, token) -> Relation
        self.by_device = {}   # (device_id, kind) -> Relation
        self.on_ack = None    # on_ack(relation) for every ACKed CON notification (an uplink, spec §13)

    def get(self, device_id, kind):
        return self.by_device.get((device_id, kind))

    def register(self, exchange, device, kind):
        key = (exchange.peer, exchange.request.token)
        same_key = self.relations.get(key)
        if same_key is not None:
            # Same token and peer: Californium cancels the old relation; ThingsBoard clears its state (§6.3).
            self._remove(same_key, "replaced by a new registration with the same token")
        previous = self.by_device.get((device["id"], kind))
        if previous is not None:
            self._remove(previous, "replaced by a new subscription with another token")
            self._send_deleted(previous)
        rel = Relation(exchange, device, kind)
        self.relations[key] = rel
        self.by_device[(rel.device_id, kind)] = rel
        return rel

    def deregister(self, peer, token):
        """GET with Observe=1 (spec §6.4). Returns the relation that was cancelled, or None."""
        rel = self.relations.get((peer, token))
        if rel is not None:
            self._remove(rel, "deregistered (Observe=1)")
        return rel

    def cancel_device(self, device_id):
        for kind in (ATTRIBUTES, RPC):
            rel = self.by_device.get((device_id, kind))
            if rel is not None:
                self._remove(rel, "device deleted")
                self._send_deleted(rel)

    def cancel(self, rel, why):
        """The server ends one subscription: 2.02 Deleted on its token (spec §6.4, §7)."""
        if rel.active:
            self._remove(rel, why)
            self._send_deleted(rel)

    def cancel_peer(self, peer, why):
        for rel in [r for r in self.relations.values() if r.peer == peer]:
            self._remove(rel, why)

    def _remove(self, rel, why):
        if not rel.active:
            return
        rel.active = False
        if self.relations.get((rel.peer, rel.token)) is rel:
            del self.relations[(rel.peer, rel.token)]
        if self.by_device.get((rel.device_id, rel.kind)) is rel:
            del self.by_device[(rel.device_id, rel.kind)]
        self.ep.cancel(rel.in_flight)
        rel.in_flight = None
        rel.waiting = None
        self.log.event(rel.peer, "observe %s %s token %s cancelled: %s"
                       % (rel.kind, rel.device_name, rel.token.hex(), why))

    def _send_deleted(self, rel):
        # The old observe exchange is sent 2.02 Deleted (spec §6.3), as a message of the registration's type.
        msg = Message(code=Code.DELETED)
        msg.token = rel.token
        msg.mid = self.ep.next_mid(rel.peer)
        if rel.con:
            self.ep.send_con(rel.peer, msg)
        else:
            self.ep.send_non(rel.peer, msg)
        self.log.event(rel.peer, "%s 2.02 Deleted -> old %s subscription of %s, token %s"
                       % ("CON" if rel.con else "NON", rel.kind, rel.device_name, rel.token.hex()))

    def notify(self, rel, payload, on_ack=None, on_fail=None, code=Code.CONTENT):
        """Send a notification; returns 'sent', 'postponed' or 'dropped'. on_fail is called on RST or timeout."""
        if not rel.active:
            return "dropped"
        msg = Message(code=code, payload=payload)
        msg.token = rel.token
        msg.opt.observe = rel.next_observe()
        msg.opt.content_format = rel.content_format
        msg.mid = self.ep.random_mid(rel.peer)
        if not rel.con:
            self.ep.send_non(rel.peer, msg, on_rst=lambda: self._rejected(rel, on_fail))
            return "sent"

        def acked():
            self.log.event(rel.peer, "ACK %s notification Observe=%d of %s"
                           % (rel.kind, msg.opt.observe, rel.device_name))
            if on_ack is not None:
                on_ack()
            if self.on_ack is not None:
                self.on_ack(rel)
            if rel.in_flight is tx:
                rel.in_flight = None
                self._send_waiting(rel)

        def failed():
            if on_fail is not None:
                on_fail()
            if rel.active:
                self.cancel_peer(rel.peer, "CON notification never acknowledged")

        tx = self.ep.make_transmission(rel.peer, msg, on_ack=acked, on_rst=lambda: self._rejected(rel, on_fail),
                                       on_fail=failed, before_retransmit=lambda old: self._swap(rel, old))
        tx.observe = msg.opt.observe
        if rel.in_flight is not None and not rel.in_flight.done:
            replaced = rel.waiting is not None
            rel.waiting = tx
            return "postponed (replacing a waiting one)" if replaced else "postponed"
        rel.in_flight = tx
        self.ep.start(tx)
        return "sent"

    def _send_waiting(self, rel):
        if rel.active and rel.waiting is not None:
            tx, rel.waiting = rel.waiting, None
            rel.in_flight = tx
            self.ep.start(tx)

    def _swap(self, rel, old):
        if rel.active and rel.waiting is not None:
            newer, rel.waiting = rel.waiting, None
            rel.in_flight = newer
            self.log.event(rel.peer, "observe %s %s: retransmission replaced by newer notification Observe=%d"
                           % (rel.kind, rel.device_name, newer.observe))
            return newer
        return None

    def _rejected(self, rel, on_fail):
        if on_fail is not None:
            on_fail()
        self._remove(rel, "RST to a notification")
