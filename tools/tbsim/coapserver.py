"""CoAP over UDP, shaped like Californium's message layer as ThingsBoard drives it (spec §1, §3).

Uses aiocoap only as a codec; this module decides message types and IDs itself:
- requests are de-duplicated by (peer, MID) for EXCHANGE_LIFETIME, and a duplicate gets back what went out
  before (CF ReliabilityLayer.receiveRequest);
- an empty ACK goes out at piggyback_timeout if nothing has been sent for a CON request (spec §3, deferAccept);
- `Exchange.respond(typed=True)` is a response whose type ThingsBoard set to the request's type: a CON request
  gets a separate CON response with a new MID and no ACK first; `typed=False` is piggybacked when still possible;
- outgoing CON messages are retransmitted (ACK_TIMEOUT, ACK_RANDOM_FACTOR, MAX_RETRANSMIT) until ACK or RST.
"""

import asyncio
import random

from aiocoap import error
from aiocoap.message import Message
from aiocoap.numbers import Code, Type

CON, NON, ACK, RST = Type.CON, Type.NON, Type.ACK, Type.RST


class Timing:
    """Californium defaults ThingsBoard keeps (spec §1); tests may shrink them."""

    def __init__(self, ack_timeout=2.0, ack_random_factor=1.5, max_retransmit=4, exchange_lifetime=247.0,
                 non_lifetime=145.0, piggyback_timeout=0.5):
        self.ack_timeout = ack_timeout
        self.ack_random_factor = ack_random_factor
        self.max_retransmit = max_retransmit
        self.exchange_lifetime = exchange_lifetime
        self.non_lifetime = non_lifetime
        self.piggyback_timeout = piggyback_timeout


class Transmission:
    """One outgoing CON message waiting for its ACK."""

    def __init__(self, peer, msg, on_ack, on_rst, on_fail, before_retransmit):
        self.peer = peer
        self.msg = msg
        self.data = msg.encode()
        self.on_ack = on_ack
        self.on_rst = on_rst
        self.on_fail = on_fail
        self.before_retransmit = before_retransmit
        self.count = 0
        self.timeout = 0.0
        self.handle = None
        self.done = False


class Exchange:
    """One inbound request and what has been sent for it."""

    def __init__(self, endpoint, peer, request):
        self.endpoint = endpoint
        self.peer = peer
        self.request = request
        self.con = request.mtype == CON
        self.created = endpoint.loop.time()
        self.acknowledged = False     # Californium Request.isAcknowledged
        self.empty_ack_sent = False
        self.response = None          # the current response Message (as sent)
        self.response_tx = None       # its Transmission when it is a separate CON
        self.on_accept = None         # called when the deferred empty ACK goes out (for the log)
        self.block1 = None            # (num, more, szx) of the last block when the body came in blocks
        self.accept_handle = endpoint.loop.call_later(endpoint.timing.piggyback_timeout, self.accept)

    @property
    def token(self):
        return self.request.token

    def accept(self):
        # CoapTransportResource.deferAccept -> Exchange.sendAccept: only a CON not yet acknowledged (spec §3).
        if self.accept_handle is not None:
            self.accept_handle.cancel()
            self.accept_handle = None
        if self.con and not self.acknowledged and self.response is None:
            self.acknowledged = True
            self.empty_ack_sent = True
            self.endpoint.send_empty(ACK, self.peer, self.request.mid)
            if self.on_accept is not None:
                self.on_accept(self)

    def respond(self, code, payload=b"", typed=True, content_format=None, observe=None,
                on_ack=None, on_rst=None, on_fail=None, extra=None):
        """Send the response; returns a short description of its shape for the log."""
        if self.accept_handle is not None:
            self.accept_handle.cancel()
            self.accept_handle = None
        msg = Message(code=code, payload=payload)
        msg.token = self.request.token
        if content_format is not None:
            msg.opt.content_format = content_format
        if observe is not None:
            msg.opt.observe = observe
        if extra is not None:
            extra(msg)  # more options (Block2, Size2)
        if self.block1 is not None and msg.opt.block1 is None:
            msg.opt.block1 = self.block1  # the final response of a Block1 transfer echoes the last block

        ep = self.endpoint
        if not typed and self.con and not self.acknowledged:
            # Type left unset: CF ReliabilityLayer.prepareResponse piggybacks it in the ACK.
            self.acknowledged = True
            msg.mtype = ACK
            msg.mid = self.request.mid
            self.response = msg
            ep.send_raw(msg.encode(), self.peer)
            return "piggybacked"
        shape = "separate " if not self.empty_ack_sent else "after empty ACK, separate "
        if self.con:
            # setConfirmable(true) marks the request acknowledged: no empty ACK for it (spec §3).
            self.acknowledged = True
            msg.mtype = CON
            msg.mid = ep.next_mid(self.peer)
            self.response = msg
            self.response_tx = ep.send_con(self.peer, msg, on_ack=on_ack, on_rst=on_rst, on_fail=on_fail)
            return shape + "CON"
        msg.mtype = NON
        msg.mid = ep.next_mid(self.peer)
        self.response = msg
        ep.send_raw(msg.encode(), self.peer)
        return shape + "NON"

    def duplicate(self):
        """A retransmitted request: re-send the ACK and/or response (CF ReliabilityLayer.receiveRequest)."""
        ep = self.endpoint
        resp = self.response
        if resp is not None:
            if resp.mtype in (CON, NON):
                if self.con:
                    ep.send_empty(ACK, self.peer, self.request.mid)
                if resp.mtype == CON and (self.response_tx is None or self.response_tx.done):
                    return "duplicate: ACK re-sent, response already acknowledged"
            ep.send_raw(resp.encode(), self.peer)
            return "duplicate: response re-sent"
        if self.acknowledged:
            ep.send_empty(ACK, self.peer, self.request.mid)
            return "duplicate: empty ACK re-sent"
        return "duplicate: ignored (still processing)"


class CoapEndpoint(asyncio.DatagramProtocol):
    """The UDP endpoint. `handler(exchange)` is called once per new request."""

    def __init__(self, handler, timing=None, on_event=None):
        self.handler = handler
        self.timing = timing or Timing()
        self.on_event = on_event or (lambda *args: None)  # (kind, peer, text) for the log
        self.loop = None
        self.transport = None
        self.exchanges = {}       # (peer, mid) -> Exchange
        self.outgoing = {}        # (peer, mid) -> Transmission (CON awaiting ACK)
        self.non_sent = {}        # (peer, mid) -> (expiry, on_rst) for NON notifications
        self._mid = random.randrange(65536)
        self._sweeper = None
        self.dtls = None          # dtls.DtlsServer: peers ending in "dtls" are sent through their session

    # ---- lifecycle
    async def open(self, host, port):
        self.loop = asyncio.get_running_loop()
        self.transport, _ = await self.loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self._sweeper = self.loop.create_task(self._sweep())
        return self.transport.get_extra_info("sockname")[1]

    def close(self):
        if self._sweeper is not None:
            self._sweeper.cancel()
        for tx in list(self.outgoing.values()):
            if tx.handle is not None:
                tx.handle.cancel()
        for ex in self.exchanges.values():
            if ex.accept_handle is not None:
                ex.accept_handle.cancel()
        self.outgoing.clear()
        if self.transport is not None:
            self.transport.close()

    async def _sweep(self):
        while True:
            await asyncio.sleep(5.0)
            now = self.loop.time()
            t = self.timing
            for key, ex in list(self.exchanges.items()):
                life = t.exchange_lifetime if ex.con else t.non_lifetime
                if now - ex.created > life:
                    del self.exchanges[key]
            for key, (expiry, _) in list(self.non_sent.items()):
                if now > expiry:
                    del self.non_sent[key]

    # ---- sending
    def send_raw(self, data, peer):
        if peer[-1] == "dtls":
            if self.dtls is not None:
                self.dtls.send(data, peer)
        elif self.transport is not None:
            self.transport.sendto(data, peer)

    def send_empty(self, mtype, peer, mid):
        msg = Message(code=Code.EMPTY)
        msg.mtype = mtype
        msg.mid = mid
        self.send_raw(msg.encode(), peer)

    def next_mid(self, peer):
        """Sequential MIDs (Californium's provider), skipping any still in use toward that peer."""
        for _ in range(65536):
            self._mid = (self._mid + 1) & 0xFFFF
            if (peer, self._mid) not in self.outgoing:
                return self._mid
        raise RuntimeError("no free message ID")

    def random_mid(self, peer):
        """ThingsBoard's notification MID: random in [0, 64999] (spec §6.2, getNextMsgId)."""
        for _ in range(1000):
            mid = random.randrange(65000)
            if (peer, mid) not in self.outgoing:
                return mid
        return self.next_mid(peer)

    def send_con(self, peer, msg, on_ack=None, on_rst=None, on_fail=None, before_retransmit=None):
        """Send `msg` as CON and retransmit until ACK/RST; on_fail after MAX_RETRANSMIT (RFC 7252 §4.2)."""
        msg.mtype = CON
        tx = Transmission(peer, msg, on_ack, on_rst, on_fail, before_retransmit)
        self.start(tx)
        return tx

    def start(self, tx):
        """Send a Transmission made by make_transmission and start its retransmission timer."""
        t = self.timing
        tx.timeout = t.ack_timeout * random.uniform(1.0, t.ack_random_factor)
        self._start(tx)

    def _start(self, tx):
        self.outgoing[(tx.peer, tx.msg.mid)] = tx
        self.send_raw(tx.data, tx.peer)
        tx.handle = self.loop.call_later(tx.timeout, self._retransmit, tx)

    def _retransmit(self, tx):
        tx.handle = None
        if tx.done:
            return
        if tx.count >= self.timing.max_retransmit:
            self._finish(tx)
            self.on_event("timeout", tx.peer, "CON %s MID %d never acknowledged" % (tx.msg.code.dotted, tx.msg.mid))
            if tx.on_fail is not None:
                tx.on_fail()
            return
        tx.count += 1
        tx.timeout *= 2
        if tx.before_retransmit is not None:
            newer = tx.before_retransmit(tx)
            if newer is not None:
                # Californium NotificationController.onRetransmission: send the newest postponed
                # notification instead, keeping the retransmission counter (spec §6.4 flow control).
                self._finish(tx)
                newer.count = tx.count
                newer.timeout = tx.timeout
                self._start(newer)
                return
        self.send_raw(tx.data, tx.peer)
        tx.handle = self.loop.call_later(tx.timeout, self._retransmit, tx)

    def _finish(self, tx):
        tx.done = True
        if tx.handle is not None:
            tx.handle.cancel()
            tx.handle = None
        if self.outgoing.get((tx.peer, tx.msg.mid)) is tx:
            del self.outgoing[(tx.peer, tx.msg.mid)]

    def cancel(self, tx):
        """Stop retransmitting without calling any callback."""
        if tx is not None:
            self._finish(tx)

    def make_transmission(self, peer, msg, on_ack=None, on_rst=None, on_fail=None, before_retransmit=None):
        """A CON Transmission not yet sent (used to replace one in flight)."""
        msg.mtype = CON
        return Transmission(peer, msg, on_ack, on_rst, on_fail, before_retransmit)

    def send_non(self, peer, msg, on_rst=None):
        msg.mtype = NON
        self.non_sent[(peer, msg.mid)] = (self.loop.time() + self.timing.non_lifetime, on_rst)
        self.send_raw(msg.encode(), peer)

    # ---- receiving
    def datagram_received(self, data, peer):
        try:
            msg = Message.decode(data)
        except error.UnparsableMessage as exc:
            # RFC 7252 §4.2: a CON that cannot be parsed is rejected with RST (if the header is readable).
            if len(data) >= 4 and data[0] >> 6 == 1 and (data[0] >> 4) & 3 == 0:
                self.send_empty(RST, peer, int.from_bytes(data[2:4], "big"))
            self.on_event("bad", peer, "unparsable datagram (%s), %d bytes" % (exc, len(data)))
            return
        if msg.mtype in (ACK, RST):
            self._match_reply(msg, peer)
            return
        if msg.code == Code.EMPTY:
            if msg.mtype == CON:
                self.send_empty(RST, peer, msg.mid)  # CoAP ping (RFC 7252 §4.3)
                self.on_event("ping", peer, "CON ping -> RST")
            return
        if not msg.code.is_request():
            if msg.mtype == CON:
                self.send_empty(RST, peer, msg.mid)  # we never sent a request
            return
        key = (peer, msg.mid)
        ex = self.exchanges.get(key)
        if ex is not None:
            self.on_event("dup", peer, "%s %s MID %d %s" % (msg.mtype.name, msg.code.name, msg.mid, ex.duplicate()))
            return
        ex = Exchange(self, peer, msg)
        self.exchanges[key] = ex
        self.handler(ex)

    def _match_reply(self, msg, peer):
        key = (peer, msg.mid)
        tx = self.outgoing.get(key)
        if tx is not None:
            self._finish(tx)
            cb = tx.on_ack if msg.mtype == ACK else tx.on_rst
            if cb is not None:
                cb()
            return
        if msg.mtype == RST:
            entry = self.non_sent.pop(key, None)
            if entry is not None and entry[1] is not None:
                entry[1]()

    def error_received(self, exc):
        self.on_event("error", None, "socket error: %s" % exc)
