"""tbsim's MQTT transport: TCP (and TLS) connections, CONNECT/CONNACK, sessions, QoS and packet ids, the way
ThingsBoard's MqttTransportHandler keeps them (spec thingsboard-mqtt.md §2, §3). The topics themselves are
mqttapi.py; packets are amqtt's codec through mqttwire.py.

- One session per device: a newer connection evicts the older one after its CONNACK (§2.7).
- sessionPresent = NOT cleanSession on every CONNACK, and nothing survives a connection (§2.3, §2.5).
- Server PUBLISHes: QoS of the first subscription filter of this connection that matches the topic, else 1; the
  packet id counts up from 1 on every PUBLISH (QoS 0 too) and wraps to 0 after 65535 as Netty's writeShort does;
  nothing is retransmitted, retain and DUP are never set (§3.3).
- The keepAlive is ignored; a connection without a packet for `inactivity_timeout` seconds is closed (§2.6).
"""

import asyncio
import json
import ssl

from . import mqttauth, mqttwire, protomode
from .log import peer_str


def topic_matches(topic_filter, topic):
    """MQTT filter matching ('+' one level, '#' the rest), as MqttTopicMatcher does for the QoS lookup."""
    f, t = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


def masked(user_name):
    """A user name (usually an access token) for the log: its first 4 characters (issue 8)."""
    if user_name is None:
        return "-"
    return user_name[:4] + "..." if len(user_name) > 4 else user_name


class Connection:
    """One MQTT connection: a device session, a provisioning session, or one still before its CONNACK."""

    def __init__(self, server, reader, writer):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.device = None
        self.proto = None          # protomode.ProtoProfile of a PROTOBUF MQTT profile
        self.send_ack_on_error = False  # the profile's sendAckOnValidationException (§3.5)
        self.provisioning = False
        self.subs = {}             # filter -> granted QoS, in the order subscribed
        self.attr_family = None    # mqttapi.Family of the attribute subscription, None when unsubscribed
        self.rpc_family = None     # mqttapi.Family of the RPC subscription
        self.next_id = 1           # DeviceSessionCtx.nextMsgId
        self.rpc_acks = {}         # packet id of a QoS 1 server RPC -> its record id
        self.ota = {}              # requestId -> package id for the rest of this connection (§11.2)
        self.ota_sizes = {}        # requestId -> the last chunk size sent for it
        self.timers = []           # delayed answers (client RPC, provisioning close) cancelled on close
        self.closed = False

    # ---- output
    def log(self, text):
        self.server.log.line("mqtt %s %s %s" % (peer_str(self.peer), self.device["name"] if self.device else "-",
                                                text))

    def send(self, data):
        if not self.closed:
            self.writer.write(data)

    def qos_for(self, topic):
        for topic_filter, qos in self.subs.items():
            if topic_matches(topic_filter, topic):
                return qos
        return 1  # responses arrive without a subscription, at QoS 1 (MDASC.getQoSForTopic)

    def publish(self, topic, payload, qos=None):
        """A server PUBLISH; returns (packet id, QoS)."""
        qos = self.qos_for(topic) if qos is None else qos
        pid = self.next_id & 0xFFFF
        self.next_id += 1
        self.send(mqttwire.publish(topic, payload, qos, pid))
        return pid, qos

    def later(self, seconds, fn):
        self.timers.append(asyncio.get_running_loop().call_later(seconds, fn))

    def close(self, why):
        if self.closed:
            return
        self.closed = True
        for handle in self.timers:
            handle.cancel()
        self.timers = []
        self.log("closed: " + why)
        self.writer.close()
        self.server.forget(self)

    # ---- input
    async def run(self):
        why = "connection closed by the client"
        try:
            first = await self._read(first=True)
            if first is None:
                return
            if not self._connect(first):
                return
            while not self.closed:
                await self.writer.drain()
                pkt = await self._read()
                if pkt is None:
                    break
                self._dispatch(pkt)
        except mqttwire.Unsupported as exc:
            self.send(mqttwire.connack(False, 0x01))
            why = "%s is not modelled by tbsim: CONNACK 0x01" % exc
        except mqttwire.Malformed as exc:
            why = "malformed packet (%s): closed without an answer" % exc
        except asyncio.TimeoutError:
            why = "no packet for %g s (inactivity timeout)" % self.server.inactivity_timeout
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            why = "connection lost (%s)" % exc
        finally:
            self.close(why)

    async def _read(self, first=False):
        return await asyncio.wait_for(mqttwire.read_packet(self.reader, first=first), self.server.inactivity_timeout)

    def _connect(self, pkt):
        cid = mqttwire.client_id(pkt)
        user, password = pkt.payload.username, pkt.payload.password
        present = not pkt.variable_header.clean_session_flag  # sessionPresent = !cleanSession (§2.3)
        desc = "CONNECT client id %r user %s" % (cid, masked(user))
        if mqttauth.is_provisioning(cid, user):
            self.provisioning = True
            self.send(mqttwire.connack(present, mqttauth.ACCEPTED))
            self.log(desc + " -> CONNACK 0x00 (provisioning session)")
            return True
        der = self._client_certificate()
        if der is not None:  # X.509: the user name is ignored (§2.2)
            from .dtls import cert_hash

            device = self.server.store.device_by_x509(cert_hash(der))
            code = mqttauth.check_transport(self.server.store, device) if device else mqttauth.NOT_AUTHORIZED
            desc += " X.509"
        else:
            device, code = mqttauth.authenticate(self.server.store, cid, user, password)
        self.send(mqttwire.connack(present, code))
        if code != mqttauth.ACCEPTED:
            self.device = device
            self.log(desc + " -> CONNACK %#04x" % code)
            self.close("credentials refused")
            return False
        self.device = device
        self.proto = protomode.for_device(self.server.store, device)
        profile = self.server.store.profile(device["profile_id"])
        cfg = json.loads(profile["transport_config"]) if profile and profile["transport_config"] else {}
        self.send_ack_on_error = bool(cfg.get("sendAckOnValidationException"))
        self.log(desc + " -> CONNACK 0x00 sessionPresent=%d" % present)
        self.server.register(self)
        return True

    def _client_certificate(self):
        sslobj = self.writer.get_extra_info("ssl_object")
        return sslobj.getpeercert(binary_form=True) if sslobj is not None else None

    def _dispatch(self, pkt):
        kind = pkt.fixed_header.packet_type
        api = self.server.api
        if kind == mqttwire.PUBLISH:
            api.publish(self, pkt.variable_header.topic_name, pkt.payload.data or b"", pkt.qos,
                        pkt.variable_header.packet_id)
        elif kind == mqttwire.PUBACK:
            rid = self.rpc_acks.pop(pkt.variable_header.packet_id, None)
            if rid is not None:
                self.server.rpc.mark_delivered(rid)
        elif kind == mqttwire.SUBSCRIBE:
            topics = pkt.payload.topics
            codes = [api.subscribe(self, topic_filter, qos) for topic_filter, qos in topics]
            self.send(mqttwire.suback(pkt.variable_header.packet_id, codes))
            self.log("SUBSCRIBE %s -> SUBACK %s" % (
                ", ".join("%s q%d" % t for t in topics), " ".join("%#04x" % c for c in codes)))
            api.subscribed(self, [t for t, c in zip(topics, codes) if c != 0x80])
        elif kind == mqttwire.UNSUBSCRIBE:
            for topic_filter in pkt.payload.topics:
                api.unsubscribe(self, topic_filter)
            self.send(mqttwire.unsuback(pkt.variable_header.packet_id))
            self.log("UNSUBSCRIBE %s -> UNSUBACK" % ", ".join(pkt.payload.topics))
        elif kind == mqttwire.PINGREQ:
            self.send(mqttwire.pingresp())
        elif kind == mqttwire.DISCONNECT:
            self.close("DISCONNECT")
        # PUBREC, PUBREL, PUBCOMP and unexpected PUBACKs are ignored (MTH.processRegularSessionMsg).


class MqttServer:
    def __init__(self, store, log, api, rpc, inactivity_timeout=600.0):
        self.store = store
        self.log = log
        self.api = api               # mqttapi.MqttDeviceApi
        self.rpc = rpc
        self.inactivity_timeout = inactivity_timeout  # transport.sessions.inactivity_timeout
        self.sessions = {}           # device id -> the device's Connection
        self.connections = set()
        self.servers = []

    async def listen(self, host, port, ssl_context=None):
        server = await asyncio.start_server(self._accept, host, port, ssl=ssl_context)
        self.servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def _accept(self, reader, writer):
        conn = Connection(self, reader, writer)
        self.connections.add(conn)
        await conn.run()

    def register(self, conn):
        """A device session after its CONNACK: the device's older session is evicted (§2.7)."""
        old = self.sessions.get(conn.device["id"])
        self.sessions[conn.device["id"]] = conn
        if old is not None:
            old.close("session taken over by a newer connection of the device")

    def forget(self, conn):
        self.connections.discard(conn)
        if conn.device is not None and self.sessions.get(conn.device["id"]) is conn:
            del self.sessions[conn.device["id"]]

    # ---- downlinks from the core (core.Core, rpc.RpcService)
    def push_attributes(self, device_id, payload):
        """A shared-attribute update (flat JSON or {"deleted": [...]}) to the device's attribute subscription."""
        conn = self.sessions.get(device_id)
        if conn is not None and conn.attr_family is not None:
            self.api.attribute_update(conn, payload)

    def send_rpc(self, rec):
        """Send an RPC to the device's RPC subscription; False when it has none (it stays pending)."""
        conn = self.sessions.get(rec["device_id"])
        if conn is None or conn.rpc_family is None:
            return False
        self.api.server_rpc(conn, rec)
        return True

    def close_device(self, device_id, why):
        conn = self.sessions.get(device_id)
        if conn is not None:
            conn.close(why)

    async def close(self):
        for conn in list(self.connections):
            conn.close("server stopped")
        for server in self.servers:
            server.close()
            await server.wait_closed()
