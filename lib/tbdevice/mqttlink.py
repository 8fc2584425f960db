# The ThingsBoard device API over MQTT 3.1.1 (docs/wire-mqtt.md): the same link (tbdevice/link.py)
# as CoapLink and HttpLink, on one asyncio TCP stream (TLS for mqtts). Packets are
# tbdevice.mqttcodec's; this module owns the connection, the packet ids and what waits for them.
#
#   - Telemetry, client attributes, RPC replies and claims are PUBLISHed at QoS 1: post()'s
#     awaitable ends with the PUBACK, so store and forward knows what the server took. A PUBACK
#     that does not come within timeout_ms means the connection is dead (TCP delivers or breaks):
#     a link fault, and the Device sends again on the next connection.
#   - Attribute requests and client-side RPC carry an id of ours in the topic; the answer comes
#     on .../response/{id} at QoS 1 with or without a subscription (wire-mqtt §3.3).
#   - The downlink is two SUBSCRIBEs made again on every new connection, since ThingsBoard keeps
#     nothing (§2.5), and then an attribute request standing in for CoAP's first notification
#     (no snapshot comes over MQTT, §6): tbdevice/mqttdown.py, loaded with Device.subscribe().
#   - Keep-alive: the Supervisor's probe() sends PINGREQ; heard() is the last packet received.
#   - A CONNACK refusing the credentials (0x02, 0x04, 0x05) leaves the link "open" but refusing:
#     every call raises errors.Unauthorized, as CoAP's 4.01 does, so samples stay queued; a call
#     made once the back-off has passed tries CONNECT again.
# OTA chunks (tbdevice/mqttota.py) and provisioning (tbdevice/mqttprov.py) load only when used;
# the stream and its packet reader are tbdevice/mqttconn.py.
import asyncio
import io
import random
import time

try:
    from micropython import const
except ImportError:  # CPython (type checks)

    def const(x):
        return x


from coap.sched import idle_ms
from tbdevice import errors
from tbdevice import mqttcodec as mc
from tbdevice.mqttconn import Wire
from tbdevice.jsonenc import dumps
from tbdevice.link import ATTRIBUTE_UPDATE, ATTRIBUTES, ATTRIBUTES_GET, CLAIM, NAMES, PROVISION, RPC_CALL, \
    TELEMETRY, backoff

_ECONNRESET = const(104)
_ENOTCONN = const(107)
_ETIMEDOUT = const(110)
_EPROTO = const(71)
_BUF = const(1088)  # the send buffer; the receive buffer's size is mqttconn's
_REFUSED = (2, 4, 5)  # CONNACK codes that refuse the credentials (wire-mqtt §2.3)
_WATCH_MS = const(500)

_TELEMETRY = b"v1/devices/me/telemetry"
_ATTRIBUTES = b"v1/devices/me/attributes"
ATTR_REQ = b"v1/devices/me/attributes/request/"
_ATTR_RES = b"v1/devices/me/attributes/response/"
_RPC_REQ = b"v1/devices/me/rpc/request/"
_RPC_RES = b"v1/devices/me/rpc/response/"
_CLAIM = b"v1/devices/me/claim"
_RPC_TIMEOUT = b'{"error":"timeout"}'  # the server's own client-RPC timeout (wire-mqtt §8)


class MqttLink:
    """tls: an ssl.SSLContext for mqtts (its client certificate, if any, is the device's X.509
    credentials), None for mqtt. Credentials: the access token as user name (set_token), or
    MQTT_BASIC client_id / username / password. timeout_ms bounds CONNACK, PUBACK and SUBACK
    (a connection that leaves them out is dead) and is the default answer time of a request."""

    def __init__(self, host, port=1883, token=None, tls=None, client_id=None, username=None, password=None,
                 keepalive_s=60, timeout_ms=10000, inline_ms=50, log=None, x509=False, bufsize=_BUF):
        self.host = host
        self.port = port
        self.tls = tls
        self.x509 = x509  # tls carries a client certificate: the credentials (wire-mqtt §2.2)
        self.client_id = client_id
        self.username = username
        self.basic = bool(client_id or username)  # MQTT_BASIC, unless a token is set (tbdevice/link.py)
        self.password = password
        self.keepalive_s = keepalive_s
        self.timeout_ms = timeout_ms
        self.inline_ms = inline_ms  # how long post() waits for its PUBACK in place (see _inline)
        self.log = log
        self.token = None
        self.codec = None  # set by the Device: what post() writes telemetry and attributes with
        self.ended = None  # (the Supervisor's hook; subscriptions end only with the connection)
        self.wire = Wire(bufsize)
        self._out = bytearray(bufsize)
        self._omv = memoryview(self._out)
        self._body = io.BytesIO(bufsize)
        self._small = bytearray(4)  # PUBACKs
        self.alive = False
        self.gen = 0  # counts connections made and lost: a waiter from another one fails
        self._pid = 0
        self._id = 0  # request ids (attribute requests, client RPC, OTA)
        self._pend = {}  # packet id -> ticks sent, until its PUBACK
        self._answers = {}  # request id -> None while waited for, then the answer's payload
        self.suback = None
        self._pong = False
        self._ev = asyncio.Event()  # an awaited packet came, or the connection ended
        self._rx = None
        self._watcher = None
        self._heard = time.ticks_ms()
        self._refused = None  # the CONNACK code that refused the credentials
        self._refusals = 0
        self._retry_at = 0
        self._opening = False
        self._idle = False  # opened without credentials: connects at the first use once it has them
        self.subscriptions = None  # tbdevice.mqttdown.Subscriptions, from start_downlink() on
        self.v2 = None  # an OTA download (tbdevice.mqttota) takes v2/... topics while it runs
        self.connects = 0
        self.received = 0
        if token:
            self.set_token(token)

    def say(self, text):
        if self.log:
            self.log(text)

    client = None  # no CoAP client underneath (Device.client)
    retransmissions = 0  # TCP retransmits; a PUBLISH lost with its connection is sent again by the Device

    def set_token(self, token):
        """The access token goes in the user name (wire-mqtt §2.2). A new one ends the session
        made with the old: the next call re-opens the link with it."""
        if token == self.token:
            return
        self.token = token
        self._refused = None
        self.lost("new credentials")
        self._idle = True  # the next call connects with them

    def stats(self):
        return {"connects": self.connects, "received": self.received, "pending": len(self._pend),
                "rx_too_big": self.wire.too_big}

    # ---- the connection ---------------------------------------------------------------
    def _credentials(self):
        user = self.username or self.token
        if user is None and self.client_id is None and not self.x509:
            return None
        cid = self.client_id
        if cid is None:
            cid = "tb-%08x" % random.getrandbits(32)  # any, unique enough: sessions go by credentials
        return cid, user, self.password if user is not None else None

    async def open(self):
        """Connect, CONNECT, read the CONNACK. OSError when that fails (the supervisor backs
        off and tries again); a refusal of the credentials returns, and leaves the link
        refusing (see the top). Without credentials yet (provisioning first) nothing is done."""
        if self._opening:
            # One open at a time (the Supervisor's, or a call's, _ready): its outcome is this one's.
            await self._wait_open()
            if self.alive or self._refused is not None:
                return
            raise OSError(_ENOTCONN, "mqtt: not connected")
        self.lost(None)
        creds = self._credentials()
        self._idle = creds is None
        if creds is None:
            return
        self._opening = True
        try:
            code = await asyncio.wait_for_ms(self._connect(creds), self.timeout_ms)
        except asyncio.TimeoutError:
            self.wire.close()
            raise OSError(_ETIMEDOUT, "mqtt: no CONNACK in %d ms" % self.timeout_ms)
        except ValueError as e:  # mqttcodec.Malformed: not an MQTT server
            self.wire.close()
            raise _hint(self, OSError(_EPROTO, str(e)), True)
        except OSError as e:
            self.wire.close()
            raise _hint(self, e)
        except BaseException:
            self.wire.close()
            raise
        finally:
            self._opening = False
            self._ev.set()
        self._heard = time.ticks_ms()
        if code == 0:
            self._refused = None
            self._refusals = 0
            self.alive = True
            self.gen += 1
            self.connects += 1
            self.resume()
            return
        self.wire.close()
        if code in _REFUSED:
            self._refused = code
            self._refusals += 1
            self._retry_at = time.ticks_add(self._heard, backoff(self._refusals, 1000, 15000))
            # not said here: the Supervisor says it once, with what to change (supervisor.refused)
            return
        # 0x03 (server unavailable), 0x01 (protocol): the server's trouble, tried again later
        raise _hint(self, OSError(_ECONNRESET, "mqtt: CONNACK %d" % code))

    async def _connect(self, creds):
        w = self.wire
        await w.dial(self.host, self.port, self.tls, self.host)
        w.write(mc.connect(creds[0], creds[1], creds[2], self.keepalive_s))
        await w.flush()
        buf, t, first, i, end = await w.packet()
        if t != mc.CONNACK:
            raise mc.Malformed("packet type %d before the CONNACK" % t)
        return mc.connack(buf, i)[1]

    def lost(self, why):
        # The connection is over (a fault, the server closed it, drop(), close()): every waiter
        # of it fails with a link fault, the Device sends again on the next one.
        if not self.alive:
            if not self._opening:  # an open under way is the new connection: not this one's to end
                self.wire.close()
            return
        self.alive = False
        self.gen += 1
        self.wire.close()
        unanswered = len(self._pend)
        self._pend.clear()
        t, self._rx = self._rx, None
        if t is not None and t is not asyncio.current_task():
            t.cancel()
        self._ev.set()
        if why:
            # closed (FIN), or reset (RST: what Linux sends when the server closes with our bytes unread)
            reset = isinstance(why, OSError) and why.args and why.args[0] == _ECONNRESET
            if unanswered and (reset or "server closed" in str(why)):
                from tbdevice.mqttwhy import unanswered as hint  # loaded only then: its text costs heap

                why = hint(why, unanswered)
            self.say("mqtt: connection lost: %s" % why)

    def drop(self):
        self.lost(None)

    async def close(self):
        await self.stop_downlink()
        if self.alive:
            try:
                self.wire.write(mc.DISCONNECT_PACKET)
                await asyncio.wait_for_ms(self.wire.flush(), 1000)
            except (OSError, asyncio.TimeoutError):
                pass  # closing anyway
        self.lost(None)
        self._refused = None

    def pause(self):
        t, self._rx = self._rx, None
        if t is not None:
            t.cancel()

    def resume(self):
        if self._rx is None and self.alive:
            self._rx = asyncio.create_task(self._receive(self.gen))

    async def _wait_open(self):
        while self._opening:
            self._ev.clear()
            await self._ev.wait()

    def heard(self):
        return self._heard

    async def probe(self, timeout_ms):
        """PINGREQ; True when the PINGRESP comes within timeout_ms. A refusing server answered;
        a link without credentials yet has nothing to probe."""
        if self._refused is not None or (self._idle and not self.alive):
            return True
        if not self.alive:
            return False
        gen = self.gen
        self._pong = False
        try:
            self.wire.write(mc.PINGREQ_PACKET)
            await asyncio.wait_for_ms(self.until(self._ponged, gen), timeout_ms)
            return True
        except (OSError, asyncio.TimeoutError):
            return False

    def _ponged(self):
        return self._pong

    async def until(self, done, gen):
        # Until done() holds; OSError once this connection is over.
        while True:
            if gen != self.gen:
                raise OSError(_ECONNRESET, "mqtt: connection lost")
            if done():
                return
            self._ev.clear()
            await self._ev.wait()

    # ---- receiving ----------------------------------------------------------------------
    async def _receive(self, gen):
        w = self.wire
        try:
            while gen == self.gen:
                t = w.take()
                if t:
                    self._handle(t)
                else:
                    await w.more()
        except asyncio.CancelledError:
            raise
        except (OSError, ValueError, MemoryError) as e:  # ValueError: mqttcodec.Malformed
            if gen == self.gen:
                self.lost(e)

    def _handle(self, t):
        # One packet the wire took (the receive task's, or the inline wait's).
        w = self.wire
        buf, i, end = w.pbuf, w.i, w.end
        self._heard = time.ticks_ms()
        self.received += 1
        if t == mc.PUBACK:
            if self._pend.pop(mc.packet_id(buf, i), None) is not None:
                self._ev.set()
        elif t == mc.PUBLISH:
            self._publish(buf, w.first, i, end)
        elif t == mc.SUBACK:
            self.suback = (mc.packet_id(buf, i), bytes(buf[i + 2:end]))
            self._ev.set()
        elif t == mc.PINGRESP:
            self._pong = True
            self._ev.set()
        elif t == mc.CONNACK:
            raise mc.Malformed("a second CONNACK")  # §3.2: the connection must close
        # PUBREC, PUBREL, PUBCOMP, UNSUBACK: nothing of ours asks for them

    def _inline(self, pid):
        # The inline wait, as coap.endpoint's: poll the socket and handle what arrives until
        # pid's PUBACK or inline_ms, and never past the time another task is due (coap.sched).
        # True when the PUBACK came: then no coroutine, no task switch, no heap per message.
        poll = self.wire.poll
        if not self.inline_ms or poll is None:
            return False
        w = self.wire
        end = time.ticks_add(time.ticks_ms(), self.inline_ms)
        try:
            while pid in self._pend:
                left = idle_ms(time.ticks_diff(end, time.ticks_ms()))
                if left <= 0 or next(poll.ipoll(left), None) is None or not w.read_now():
                    return False
                while True:
                    t = w.take()
                    if not t:
                        break
                    self._handle(t)
        except (OSError, ValueError, MemoryError) as e:  # as in _receive: the connection is over
            self.lost(e)
            return False
        return True

    def _publish(self, buf, first, i, end):
        qos, a, b, pid, p = mc.publish_parts(first, buf, i, end)
        if qos == 2:
            raise mc.Malformed("QoS 2 PUBLISH: the subscriptions asked for 1")  # §3.8.4
        if qos:
            # At once: a server RPC counts as delivered with it (wire-mqtt §7).
            mc.puback_into(self._small, pid)
            self.wire.write(self._small)
        n = b - a
        d = self.subscriptions
        if buf.startswith(_ATTRIBUTES, a) and n == len(_ATTRIBUTES):
            if d is not None:
                d.put(ATTRIBUTE_UPDATE, bytes(buf[p:end]), False)
        elif buf.startswith(_RPC_REQ, a):
            if d is not None:
                d.rpc(buf, a + len(_RPC_REQ), b, p, end)
        elif buf.startswith(_ATTR_RES, a) or buf.startswith(_RPC_RES, a):
            k = _ATTR_RES if buf[a + 14] == 97 else _RPC_RES  # "a" of .../me/attributes/...
            rid = bytes(buf[a + len(k):b])
            if rid.isdigit():
                rid = int(rid)
                if rid in self._answers:
                    self._answers[rid] = bytes(buf[p:end])
                    self._ev.set()
        elif self.v2 is not None and buf.startswith(b"v2/", a):
            self.v2.received(buf, a, b, p, end)
            self._ev.set()

    # ---- sending ------------------------------------------------------------------------
    def next_pid(self):
        # 1..65535: id 0 makes ThingsBoard's decoder close the connection (wire-mqtt §2.1, §15)
        p = self._pid % 65535 + 1
        while p in self._pend:
            p = p % 65535 + 1
        self._pid = p
        return p

    def _send(self, topic, n):
        # The payload is in _body[0:n]: one PUBLISH at QoS 1; returns its packet id.
        pid = self.next_pid()
        b = self._body
        b.seek(0)
        if len(topic) + n + 9 <= len(self._out):
            i = mc.publish_head(self._out, topic, n, 1, pid)
            b.readinto(self._omv[i:i + n])
            self.wire.write(self._omv[:i + n])
        else:  # above the buffer: a packet of its own
            out = bytearray(len(topic) + n + 9)
            i = mc.publish_head(out, topic, n, 1, pid)
            b.readinto(memoryview(out)[i:i + n])
            self.wire.write(memoryview(out)[:i + n])
        self._pend[pid] = time.ticks_ms()
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch())
        return pid

    async def _watch(self):
        # While PUBLISHes wait for their PUBACK: one left unanswered for timeout_ms means the
        # connection is dead (a half-open TCP connection looks just like a slow server).
        try:
            while self._pend:
                await asyncio.sleep_ms(_WATCH_MS)
                now = time.ticks_ms()
                for t in self._pend.values():
                    if time.ticks_diff(now, t) > self.timeout_ms:
                        self.lost("no PUBACK in %d ms" % self.timeout_ms)
                        break
        finally:
            self._watcher = None

    def unusable(self):
        # Why nothing can be sent now, or None.
        if self._refused is not None:
            return errors.Unauthorized("mqtt: CONNACK %d: the server refuses the credentials" % self._refused, 129)
        if not self.alive:
            return OSError(_ENOTCONN, "mqtt: not connected")
        return None

    def post(self, op, body, arg=None):
        """An uplink answered by a PUBACK only (telemetry, attributes, RPC reply, claim; arg:
        the telemetry's ts or the reply's id): the awaitable ends with the PUBACK. A value the
        codec cannot encode raises here, before anything is sent."""
        if self.unusable() is not None:
            return self._again(op, body, arg)
        b = self._body
        b.seek(0)
        if op == TELEMETRY:
            self.codec.write_telemetry(b, body, arg)
            topic = _TELEMETRY
        elif op == ATTRIBUTES:
            self.codec.write_attributes(b, body)
            topic = _ATTRIBUTES
        else:
            if body:
                b.write(body)
            topic = _CLAIM if op == CLAIM else _RPC_RES + str(arg).encode()
        gen = self.gen
        try:
            pid = self._send(topic, b.tell())
        except OSError as e:
            self.lost(e)
            return self._fail(e)
        if self._inline(pid):
            return None
        return self._acked(pid, gen)

    async def _fail(self, e):
        raise e

    async def _acked(self, pid, gen):
        while True:
            if gen != self.gen:
                raise OSError(_ECONNRESET, "mqtt: connection lost before the PUBACK")
            if pid not in self._pend:
                return
            self._ev.clear()
            await self._ev.wait()

    async def _again(self, op, body, arg):
        await self.ready()
        r = self.post(op, body, arg)
        if r is not None:
            await r

    async def ready(self):
        # Connected, or made so: a link opened before it had credentials (provisioning first)
        # connects once it has them; while the server refuses them, one CONNECT after each
        # back-off, else the refusal. Otherwise not connected is a link fault (the Device's).
        if self._opening:
            await self._wait_open()
        elif self._refused is not None:
            if time.ticks_diff(time.ticks_ms(), self._retry_at) >= 0:
                await self.open()
        elif not self.alive and self._idle and self._credentials() is not None:
            await self.open()
        e = self.unusable()
        if e is not None:
            raise e

    def new_id(self):
        self._id = self._id % 99999999 + 1
        return self._id

    async def request(self, op, body=b"", query=None, timeout_ms=None, rid=None):
        """One operation; the answer's payload (None for an attribute request that found
        nothing: {} over MQTT). No answer within timeout_ms raises errors.Timeout, as does the
        server's own {"error":"timeout"} for a client-side RPC (wire-mqtt §8)."""
        if op == PROVISION:
            from tbdevice.mqttprov import provision

            return await provision(self, body, timeout_ms or self.timeout_ms)
        if self.unusable() is not None:
            await self.ready()
        if op != ATTRIBUTES_GET and op != RPC_CALL:
            b = self._body
            b.seek(0)
            if body:
                b.write(body)
            topic = _TELEMETRY if op == TELEMETRY else _ATTRIBUTES if op == ATTRIBUTES else _CLAIM if op == CLAIM \
                else _RPC_RES + str(rid).encode()
            await self._acked(self._send(topic, b.tell()), self.gen)
            return None
        i = self.new_id()
        if op == ATTRIBUTES_GET:
            topic = ATTR_REQ
            # "clientKeys" / "sharedKeys" as comma-separated strings; neither: every attribute (§5);
            # a protobuf profile's codec writes them as transportapi.AttributesRequest (§12.2)
            body = {k: ",".join(v) for k, v in query or () if v}
            body = dumps(body) if self.codec.name == "json" else self.codec.attributes_request(body)
        else:
            topic = _RPC_REQ
        return await self.ask(topic + str(i).encode(), body, i, timeout_ms or self.timeout_ms, NAMES[op], op)

    async def ask(self, topic, body, i, timeout_ms, what, op=None):
        """PUBLISH body on topic and return the answer keyed i (request id), up to timeout_ms."""
        self._answers[i] = None
        try:
            await self.exchange(topic, body, lambda: self._answers.get(i) is not None, timeout_ms, what)
            p = self._answers[i]
        finally:
            self._answers.pop(i, None)
        if op == ATTRIBUTES_GET and p.strip() == b"{}":
            return None
        if op == RPC_CALL and p == _RPC_TIMEOUT:  # (a protobuf profile's: its codec raises it)
            raise errors.Timeout("rpc: the server's client-side RPC timeout")
        return p

    async def exchange(self, topic, body, done, timeout_ms, what):
        """PUBLISH body (bytes or str) on topic at QoS 1, then wait until done() holds, up to
        timeout_ms (errors.Timeout); OSError when the connection ends meanwhile."""
        e = self.unusable()
        if e is not None:
            raise e
        gen = self.gen
        b = self._body
        b.seek(0)
        b.write(body)
        self._send(topic, b.tell())
        try:
            await asyncio.wait_for_ms(self.until(done, gen), timeout_ms)
        except asyncio.TimeoutError:
            raise errors.Timeout("%s: no answer in %d ms" % (what, timeout_ms))

    def download(self, kind, pkg, offset, data, mode="chunk", chunk_size=1024, path="fw", timeout_ms=None):
        """An OTA package from byte `offset` on, in chunks over v2/fw/request/{id}/chunk/{n}
        (wire-mqtt §11; tbdevice/mqttota.py, loaded only for a download; mode and path are CoAP's)."""
        from tbdevice.mqttota import download

        return download(self, kind, pkg, offset, data, chunk_size, timeout_ms or self.timeout_ms)

    # ---- downlink (tbdevice/mqttdown.py, loaded with subscribe()) ---------------------------
    @property
    def subscribed(self):
        d = self.subscriptions
        return d is not None and d.subscribed()

    def start_downlink(self, put, silence_ms=300000):
        """put(kind, payload, initial) gets shared-attribute updates and RPC requests; the
        Supervisor subscribes (keep_downlink). silence_ms is CoAP's."""
        if self.subscriptions is None:
            from tbdevice.mqttdown import Subscriptions

            self.subscriptions = Subscriptions(self, put)

    def keep_downlink(self, renew=False):
        """None while this connection's subscriptions and attribute state stand; else the
        coroutine making them (tbdevice/mqttdown.py)."""
        d = self.subscriptions
        return None if d is None else d.keep()

    async def stop_downlink(self):
        self.subscriptions = None


def _hint(link, e, malformed=False):
    # A connection that failed before its CONNACK, in words that say what to change; the text
    # loads only then (tbdevice/mqttwhy.py), so a working device does not carry it in its heap.
    from tbdevice.mqttwhy import connect_failed

    return connect_failed(link.host, link.port, link.tls, e, malformed)
