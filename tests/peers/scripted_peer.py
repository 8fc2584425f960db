# A scripted CoAP peer for tests: a CPython UDP endpoint on loopback that answers each
# request the way a test's script says (piggybacked, separate with or without an ACK
# first, lost, duplicated, reset, silent, garbage, block-wise ...) and records every
# datagram it receives and sends, with arrival times, for assertions.
#
# It parses and builds messages with aiocoap's codec, so a bug in our own codec
# (lib/coap/message.py) cannot hide itself by being on both sides of the wire.
#
#   peer = ScriptedPeer(Router({"a": Piggyback(b"hi"), "slow": Separate(b"x", delay=0.1)}))
#   with peer:
#       ... run a client against 127.0.0.1:peer.port ...
#       peer.requests("a")      # every copy of every request to /a, with .t arrival times
#
# The peer runs its own asyncio loop in a daemon thread. Handlers run in that thread;
# test code reads the records through the thread-safe accessors.
import asyncio
import threading
import time

from aiocoap.error import UnparsableMessage
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

CON, NON, ACK, RST = Type.CON, Type.NON, Type.ACK, Type.RST
EMPTY = Code.EMPTY


class Datagram:
    """One datagram received or sent by the peer. `msg` is the aiocoap Message, or None
    when aiocoap could not parse it. `note` says what the script made of it."""

    __slots__ = ("t", "data", "addr", "msg", "note")

    def __init__(self, t, data, addr, msg, note=""):
        self.t = t
        self.data = data
        self.addr = addr
        self.msg = msg
        self.note = note

    @property
    def mtype(self):
        return None if self.msg is None else self.msg.mtype

    @property
    def code(self):
        return None if self.msg is None else self.msg.code

    @property
    def mid(self):
        return None if self.msg is None else self.msg.mid

    @property
    def token(self):
        return None if self.msg is None else self.msg.token

    @property
    def path(self):
        return None if self.msg is None else "/".join(self.msg.opt.uri_path)

    def is_request(self):
        return self.msg is not None and self.msg.code.is_request()

    def is_empty(self, mtype=None):
        return self.msg is not None and self.msg.code == EMPTY and (mtype is None or self.msg.mtype == mtype)

    def __repr__(self):
        return "<Datagram %.3f %r %s>" % (self.t, self.msg if self.msg is not None else self.data, self.note)


def decode(data):
    try:
        return Message.decode(data)
    except (UnparsableMessage, ValueError, IndexError):
        return None


def build(mtype, code, mid, token=b"", payload=b"", **opts):
    """An encoded-ready aiocoap Message; opts are aiocoap option attribute names
    (observe=, block1=(num, more, szx), block2=..., etag=, size2=, content_format=)."""
    msg = Message(code=code, payload=payload)
    msg.mtype = mtype
    msg.mid = mid
    msg.token = token
    for k, v in opts.items():
        setattr(msg.opt, k, v)
    return msg


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, peer):
        self.peer = peer

    def connection_made(self, transport):
        self.peer._transport = transport

    def datagram_received(self, data, addr):
        self.peer._received(data, addr)


class ScriptedPeer:
    def __init__(self, handler=None, host="127.0.0.1", port=0):
        self.handler = handler if handler is not None else Router()
        self.host = host
        self.port = port
        self.loop = None
        self._transport = None
        self._thread = None
        self._lock = threading.Lock()
        self._received_list = []
        self._sent_list = []
        self._mid = 0x3000
        self._reliable = {}  # (addr, mid) -> _Reliable, for CON messages the peer retransmits
        self.errors = []  # exceptions raised by the script (a test should assert none)

    # ---- lifecycle (test thread) ----------------------------------------------
    def start(self):
        ready = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            tr, _ = self.loop.run_until_complete(
                self.loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=(self.host, self.port))
            )
            self.port = tr.get_extra_info("sockname")[1]
            ready.set()
            try:
                self.loop.run_forever()
            finally:
                tr.close()
                self.loop.run_until_complete(asyncio.sleep(0))
                self.loop.close()

        self._thread = threading.Thread(target=run, name="scripted-peer", daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("scripted peer did not start")
        return self

    def stop(self):
        if self.loop is not None and self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- records (any thread) --------------------------------------------------
    @property
    def received(self):
        with self._lock:
            return list(self._received_list)

    @property
    def sent(self):
        with self._lock:
            return list(self._sent_list)

    def requests(self, path=None):
        return [d for d in self.received if d.is_request() and (path is None or d.path == path)]

    def empties(self, mtype, mid=None):
        """Empty ACKs or RSTs the peer received (from the client), optionally for one MID."""
        return [d for d in self.received if d.is_empty(mtype) and (mid is None or d.mid == mid)]

    def wait_until(self, pred, timeout=5.0, interval=0.01):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(interval)
        return pred()

    # ---- sending (peer thread) ----------------------------------------------------
    def next_mid(self):
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def send(self, msg_or_bytes, addr, note=""):
        data = msg_or_bytes if isinstance(msg_or_bytes, (bytes, bytearray)) else msg_or_bytes.encode()
        data = bytes(data)
        with self._lock:
            self._sent_list.append(Datagram(time.monotonic(), data, addr, decode(data), note))
        self._transport.sendto(data, addr)

    def later(self, delay, fn, *args):
        if delay <= 0:
            fn(*args)
        else:
            self.loop.call_later(delay, self._guard, fn, *args)

    def _guard(self, fn, *args):
        try:
            fn(*args)
        except Exception as e:  # a script bug: keep the peer alive, let the test see it
            self.errors.append(e)

    def send_reliably(self, msg, addr, rto=0.2, max_retransmit=4, ignore_acks=0, on_done=None):
        """Send a CON message and retransmit it (doubling, RFC 7252 §4.2) until the
        client ACKs or RSTs it. `ignore_acks` pretends the first n ACKs were lost, so the
        client sees duplicates and has to ACK them again."""
        st = _Reliable(self, msg.encode(), addr, rto, max_retransmit, ignore_acks, on_done)
        self._reliable[(addr, msg.mid)] = st
        st.fire()
        return st

    # ---- receiving (peer thread) --------------------------------------------------
    def _received(self, data, addr):
        dg = Datagram(time.monotonic(), bytes(data), addr, decode(data))
        with self._lock:
            self._received_list.append(dg)
        if dg.msg is not None and dg.msg.code == EMPTY and dg.msg.mtype in (ACK, RST):
            st = self._reliable.get((addr, dg.msg.mid))
            if st is not None:
                st.answered(dg)
        try:
            self.handler(self, dg)
        except Exception as e:
            self.errors.append(e)


class _Reliable:
    def __init__(self, peer, data, addr, rto, max_retransmit, ignore_acks, on_done):
        self.peer = peer
        self.data = data
        self.addr = addr
        self.rto = rto
        self.left = max_retransmit + 1
        self.ignore = ignore_acks
        self.on_done = on_done
        self.done = False
        self.reply = None  # ACK or RST
        self.sends = 0
        self.timer = None

    def fire(self):
        if self.done:
            return
        if self.left == 0:
            self.done = True
            if self.on_done:
                self.on_done(self)
            return
        self.left -= 1
        self.peer.send(self.data, self.addr, "retransmission" if self.sends else "")
        self.sends += 1
        self.timer = self.peer.loop.call_later(self.rto, self.peer._guard, self.fire)
        self.rto *= 2

    def answered(self, dg):
        if self.done:
            return
        if self.ignore > 0 and dg.msg.mtype == ACK:
            self.ignore -= 1
            dg.note = "ACK ignored by script"
            return
        self.done = True
        self.reply = dg.msg.mtype
        if self.timer is not None:
            self.timer.cancel()
        if self.on_done:
            self.on_done(self)


# ---- scripts ------------------------------------------------------------------------
class Ctx:
    """What a behaviour gets for one request: helpers to answer it."""

    def __init__(self, peer, dg, router, key):
        self.peer = peer
        self.dg = dg
        self.msg = dg.msg
        self.addr = dg.addr
        self.router = router
        self.key = key
        self.beh = None

    def send(self, msg_or_bytes, delay=0.0, note=""):
        """Send to the client now or after `delay` seconds; remembered as an answer to
        this request so a retransmitted copy is answered the same way (Californium's
        deduplicator does that, spec §3)."""

        def go():
            data = msg_or_bytes if isinstance(msg_or_bytes, (bytes, bytearray)) else msg_or_bytes.encode()
            self.router.answered.setdefault(self.key, []).append(bytes(data))
            self.peer.send(data, self.addr, note)
            if self.beh is not None and self.beh.dup and decode(data) is not None and decode(data).code != EMPTY:
                self.peer.send(data, self.addr, "duplicate")

        self.peer.later(delay, go)

    def response(self, code=Code.CONTENT, payload=b"", mtype=None, mid=None, token=None, **opts):
        req = self.msg
        if mtype is None:
            mtype = ACK if req.mtype == CON else NON
        if mid is None:
            mid = req.mid if mtype == ACK else self.peer.next_mid()
        return build(mtype, code, mid, req.token if token is None else token, payload, **opts)

    def empty_ack(self, delay=0.0):
        self.send(build(ACK, EMPTY, self.msg.mid), delay, "empty ACK")

    def rst(self, delay=0.0):
        self.send(build(RST, EMPTY, self.msg.mid), delay, "RST")


def _payload(p, ctx):
    return p(ctx) if callable(p) else p


class Behaviour:
    """A way to answer requests. drop=n loses the first n copies of each request
    (by message ID); dup=True sends every non-empty answer twice (same MID)."""

    def __init__(self, drop=0, dup=False):
        self.drop = drop
        self.dup = dup

    def __call__(self, ctx):
        raise NotImplementedError


class Piggyback(Behaviour):
    """The response in the ACK (for a NON request: a NON response with a new MID).
    payload and delay may be callables of the Ctx (to echo the request, say)."""

    def __init__(self, payload=b"", code=Code.CONTENT, delay=0.0, opts=None, **kw):
        super().__init__(**kw)
        self.payload, self.code, self.delay, self.opts = payload, code, delay, opts or {}

    def __call__(self, ctx):
        ctx.send(ctx.response(self.code, _payload(self.payload, ctx), **self.opts), _payload(self.delay, ctx))


class Separate(Behaviour):
    """A separate response after `delay` s: CON (new MID) or NON. empty_ack=True sends an
    empty ACK first (RFC 7252 §5.2.2); empty_ack=False is ThingsBoard's shape (spec §3):
    a CON response with a new MID and no ACK. reliable=True retransmits a CON response
    until the client ACKs it (ignore_acks=n: pretend the first n ACKs were lost)."""

    def __init__(self, payload=b"", code=Code.CONTENT, delay=0.05, con=True, empty_ack=True, reliable=False,
                 rto=0.2, ignore_acks=0, **kw):
        super().__init__(**kw)
        self.payload, self.code, self.delay, self.con, self.empty_ack = payload, code, delay, con, empty_ack
        self.reliable, self.rto, self.ignore_acks = reliable, rto, ignore_acks
        self.exchanges = []  # _Reliable states, for assertions

    def __call__(self, ctx):
        if self.empty_ack and ctx.msg.mtype == CON:
            ctx.empty_ack()
        resp = ctx.response(self.code, _payload(self.payload, ctx), CON if self.con else NON)
        if self.reliable and self.con:

            def go():
                ctx.router.answered.setdefault(ctx.key, []).append(resp.encode())
                self.exchanges.append(ctx.peer.send_reliably(resp, ctx.addr, self.rto, ignore_acks=self.ignore_acks))

            ctx.peer.later(self.delay, go)
        else:
            ctx.send(resp, self.delay)


class Silent(Behaviour):
    """Never answers."""

    def __call__(self, ctx):
        pass


class Reset(Behaviour):
    """Answers with RST (the request was not processed)."""

    def __call__(self, ctx):
        ctx.rst()


class Garbage(Behaviour):
    """Sends raw datagrams (callables get the ctx: to reuse the request's token or MID)
    before the real answer of `then`, `gap` s apart."""

    def __init__(self, datagrams, then=None, gap=0.01, **kw):
        super().__init__(**kw)
        self.datagrams, self.then, self.gap = datagrams, then, gap

    def __call__(self, ctx):
        t = 0.0
        for d in self.datagrams:
            data = d(ctx) if callable(d) else d
            ctx.peer.later(t, ctx.peer.send, data, ctx.addr, "garbage")
            t += self.gap
        if self.then is not None:
            ctx.peer.later(t, self.then, ctx)


class UnknownToken(Behaviour):
    """A CON response with a token nobody asked for (and a new MID), then the real answer."""

    def __init__(self, then, token=b"\xde\xad\xbe\xef", con=True, gap=0.02, **kw):
        super().__init__(**kw)
        self.then, self.token, self.con, self.gap = then, token, con, gap
        self.mids = []

    def __call__(self, ctx):
        mid = ctx.peer.next_mid()
        self.mids.append(mid)
        ctx.peer.send(build(CON if self.con else NON, Code.CONTENT, mid, self.token, b"stray"), ctx.addr, "unknown token")
        ctx.peer.later(self.gap, self.then, ctx)


class Together(Behaviour):
    """Holds requests until n have arrived, then answers them all with `then` in one go
    (reverse order by default), so the answers reach the client back to back."""

    def __init__(self, n, then, reverse=True, **kw):
        super().__init__(**kw)
        self.n, self.then, self.reverse = n, then, reverse
        self.held = []

    def __call__(self, ctx):
        self.held.append(ctx)
        if len(self.held) >= self.n:
            held, self.held = self.held, []
            for c in reversed(held) if self.reverse else held:
                c.beh = self.then
                self.then(c)


class Block2(Behaviour):
    """Serves `body` block by block (RFC 7959 §2.4): the block the request asks for, at
    min(requested SZX, max_szx); block 0 without a Block2 option at max_szx."""

    def __init__(self, body, max_szx=6, etag=None, **kw):
        super().__init__(**kw)
        self.body, self.max_szx, self.etag = body, max_szx, etag

    def __call__(self, ctx):
        b2 = ctx.msg.opt.block2
        num, szx = (b2.block_number, b2.size_exponent) if b2 is not None else (0, self.max_szx)
        if szx > self.max_szx:
            num, szx = num * (1 << (szx - self.max_szx)), self.max_szx
        size = 1 << (szx + 4)
        off = num * size
        if off >= len(self.body) and off:
            ctx.send(ctx.response(Code.BAD_OPTION))
            return
        opts = {"block2": (num, off + size < len(self.body), szx)}
        if num == 0:
            opts["size2"] = len(self.body)
        if self.etag is not None:
            opts["etag"] = _payload(self.etag, ctx)
        ctx.send(ctx.response(Code.CONTENT, self.body[off : off + size], **opts))


class Block1(Behaviour):
    """Receives Block1 uploads (RFC 7959 §2.5): 2.31 Continue for each block but the
    last (asking for at most max_szx), then `final` code. Completed bodies are in .bodies."""

    def __init__(self, max_szx=6, final=Code.CHANGED, final_payload=b"", **kw):
        super().__init__(**kw)
        self.max_szx, self.final, self.final_payload = max_szx, final, final_payload
        self.partial = {}
        self.bodies = []
        self.size1 = []

    def __call__(self, ctx):
        msg = ctx.msg
        b1 = msg.opt.block1
        if b1 is None:
            self.bodies.append(bytes(msg.payload))
            ctx.send(ctx.response(self.final, self.final_payload))
            return
        num, more, szx = b1.block_number, b1.more, b1.size_exponent
        if num == 0:
            self.partial[ctx.addr] = bytearray()
            self.size1.append(msg.opt.size1)
        buf = self.partial.get(ctx.addr)
        if buf is None or num * (1 << (szx + 4)) != len(buf):
            ctx.send(ctx.response(Code.REQUEST_ENTITY_INCOMPLETE))
            return
        buf += msg.payload
        if more:
            ctx.send(ctx.response(Code.CONTINUE, block1=(num, True, min(szx, self.max_szx))))
        else:
            self.bodies.append(bytes(buf))
            del self.partial[ctx.addr]
            ctx.send(ctx.response(self.final, self.final_payload, block1=(num, False, szx)))


class Observe(Behaviour):
    """RFC 7641 resource: the registration (Observe=0) is answered piggybacked with
    Observe=first; then each (delay_s, payload) in `notify` goes out as a CON (reliable,
    new MID) or NON notification with increasing Observe; dup_notify sends each
    notification twice with the same MID. A deregistration (Observe=1) or plain GET gets
    a response without Observe."""

    def __init__(self, notify=(), first=b"0", con=True, dup_notify=False, seq0=5, rto=0.3, **kw):
        super().__init__(**kw)
        self.notify, self.first, self.con, self.dup_notify, self.seq0, self.rto = notify, first, con, dup_notify, seq0, rto
        self.deregistered = 0
        self.notified = []  # (mid, observe, payload) as sent

    def __call__(self, ctx):
        if ctx.msg.opt.observe != 0:
            self.deregistered += 1
            ctx.send(ctx.response(Code.CONTENT, b"bye"))
            return
        ctx.send(ctx.response(Code.CONTENT, self.first, observe=self.seq0))
        t = 0.0
        for i, item in enumerate(self.notify):
            # (delay, payload) or (delay, payload, observe value or None, code)
            delay, payload = item[0], item[1]
            seq = item[2] if len(item) > 2 else self.seq0 + 1 + i
            code = item[3] if len(item) > 3 else Code.CONTENT
            t += delay
            ctx.peer.later(t, self._notify, ctx, seq, payload, code)

    def _notify(self, ctx, seq, payload, code=Code.CONTENT):
        mid = ctx.peer.next_mid()
        opts = {} if seq is None else {"observe": seq}
        msg = ctx.response(code, payload, CON if self.con else NON, mid=mid, **opts)
        self.notified.append((mid, seq, payload))
        if self.con:
            ctx.peer.send_reliably(msg, ctx.addr, self.rto)
        else:
            ctx.peer.send(msg, ctx.addr, "notification")
        if self.dup_notify:
            ctx.peer.send(msg, ctx.addr, "duplicate notification")


class Router:
    """The usual handler: routes requests by Uri-Path to behaviours, counts copies of each
    request (by MID) for `drop`, answers an empty CON (ping) with RST, and answers a
    retransmitted CON request by re-sending what was sent for the first copy."""

    def __init__(self, routes=None, default=None, dedup=True):
        self.routes = dict(routes or {})
        self.default = default if default is not None else Piggyback(code=Code.NOT_FOUND)
        self.dedup = dedup
        self.copies = {}
        self.answered = {}

    def __call__(self, peer, dg):
        msg = dg.msg
        if msg is None:
            dg.note = "unparsable"
            return
        if msg.code == EMPTY:
            if msg.mtype == CON:
                peer.send(build(RST, EMPTY, msg.mid), dg.addr, "pong")
            return
        if not msg.code.is_request():
            dg.note = "not a request"
            return
        key = (dg.addr, msg.mid)
        k = self.copies.get(key, 0)
        self.copies[key] = k + 1
        beh = self.routes.get("/".join(msg.opt.uri_path), self.default)
        if k < beh.drop:
            dg.note = "dropped by script (copy %d)" % k
            return
        if self.dedup and key in self.answered:
            dg.note = "duplicate: answered again"
            for data in self.answered[key]:
                peer.send(data, dg.addr, "replay")
            return
        self.answered[key] = []
        ctx = Ctx(peer, dg, self, key)
        ctx.beh = beh
        beh(ctx)
