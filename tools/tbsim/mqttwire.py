"""MQTT 3.1/3.1.1 packets for tbsim, with amqtt's codec (amqtt.mqtt) and Netty's decoder rules on top.

amqtt decodes and encodes the packets; this module only frames them off the stream (the remaining length is
checked before the body is read, as Netty's MqttDecoder does) and adds the checks Netty makes that amqtt does not
(spec thingsboard-mqtt.md §2.1): packet id 0, the fixed-header flags of SUBSCRIBE/UNSUBSCRIBE/PUBREL, QoS 3, the
CONNECT reserved bit, the protocol name and level. Any failure is `Malformed`: the caller closes the connection
without sending anything (MQTT 3.x).
"""

import asyncio
import struct

from amqtt.adapters import BufferReader, StreamReaderAdapter
from amqtt.errors import AMQTTError, CodecError, MQTTError, NoDataError
from amqtt.mqtt import packet_class
from amqtt.mqtt.connack import ConnackPacket
from amqtt.mqtt.packet import (CONNECT, DISCONNECT, PINGREQ, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBSCRIBE,
                               UNSUBSCRIBE, MQTTFixedHeader)
from amqtt.mqtt.pingresp import PingRespPacket
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.suback import SubackPacket
from amqtt.mqtt.unsuback import UnsubackPacket

__all__ = ["CONNECT", "DISCONNECT", "PINGREQ", "PUBACK", "PUBCOMP", "PUBLISH", "PUBREC", "PUBREL", "SUBSCRIBE",
           "UNSUBSCRIBE", "Malformed", "read_packet", "connack", "puback", "suback", "unsuback", "pingresp",
           "publish"]

MAX_REMAINING = 65536  # NETTY_MAX_PAYLOAD_SIZE: a larger incoming packet fails decoding (spec §2.8)
_WITH_ID = (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE)
_FLAGS_0010 = (SUBSCRIBE, UNSUBSCRIBE, PUBREL)  # MqttDecoder.decodeFixedHeader
# Protocol name -> levels Netty's MqttVersion knows; level 5 (MQTT 5) is not modelled by tbsim.
_VERSIONS = {"MQTT": (4,), "MQIsdp": (3,)}


class Malformed(ValueError):
    """A packet Netty's decoder would reject: the connection is closed and nothing is sent (spec §2.1)."""


class Unsupported(Malformed):
    """MQTT 5 (protocol level 5): ThingsBoard speaks it, tbsim does not; answered with CONNACK 0x01."""


async def read_packet(reader, first=False):
    """The next packet from an asyncio StreamReader (an amqtt packet object), or None at end of stream.
    `first`: the first packet of a connection must be a CONNECT."""
    fh = await MQTTFixedHeader.from_stream(StreamReaderAdapter(reader))
    if fh is None:
        return None
    if fh.remaining_length > MAX_REMAINING:
        raise Malformed("remaining length %d > %d" % (fh.remaining_length, MAX_REMAINING))
    try:
        body = await reader.readexactly(fh.remaining_length)
    except asyncio.IncompleteReadError:
        return None
    kind = fh.packet_type
    if first != (kind == CONNECT):
        raise Malformed("CONNECT expected first, and only first (packet type %d)" % kind)
    if kind in _FLAGS_0010 and fh.flags != 0x02:
        raise Malformed("packet type %d with fixed-header flags %#x" % (kind, fh.flags))
    if kind == PUBLISH and (fh.flags >> 1) & 3 == 3:
        raise Malformed("PUBLISH with QoS 3")
    try:
        cls = packet_class(fh)
        pkt = await cls.from_stream(BufferReader(body), fixed_header=fh)
    except (AMQTTError, MQTTError, CodecError, NoDataError, UnicodeDecodeError, struct.error, ValueError) as exc:
        # amqtt's PublishVariableHeader refuses '+'/'#' in a topic name (MqttCodecUtil.isValidPublishTopicName).
        raise Malformed("%s: %s" % (type(exc).__name__, exc)) from exc
    if kind == CONNECT:
        _check_connect(pkt)
    elif (kind in _WITH_ID or (kind == PUBLISH and pkt.qos)) and not pkt.variable_header.packet_id:
        raise Malformed("packet id 0 in packet type %d" % kind)  # MqttCodecUtil.isValidMessageId
    return pkt


def _check_connect(pkt):
    vh = pkt.variable_header
    if vh.reserved_flag:
        raise Malformed("CONNECT reserved flag set")
    if vh.proto_name == "MQTT" and vh.proto_level == 5:
        raise Unsupported("MQTT 5")
    if vh.proto_level not in _VERSIONS.get(vh.proto_name, ()):
        raise Malformed("protocol %r level %d" % (vh.proto_name, vh.proto_level))
    if vh.proto_level == 3 and not 1 <= len(client_id(pkt)) <= 23:
        raise Malformed("MQTT 3.1 client id must have 1..23 characters")  # MqttCodecUtil.isValidClientId


def client_id(pkt):
    """The CONNECT's client id as sent ("" when empty: amqtt puts a random one in its place)."""
    return "" if pkt.payload.client_id_is_random else pkt.payload.client_id


# ---- encoders (amqtt's packet builders)
def connack(session_present, code):
    return ConnackPacket.build(1 if session_present else 0, code).to_bytes()


def puback(packet_id):
    return PubackPacket.build(packet_id).to_bytes()


def suback(packet_id, codes):
    return SubackPacket.build(packet_id, codes).to_bytes()


def unsuback(packet_id):
    return UnsubackPacket.build(packet_id).to_bytes()


def pingresp():
    return PingRespPacket.build().to_bytes()


def publish(topic, payload, qos, packet_id):
    """A server PUBLISH: never retained, never DUP (spec §2.5). QoS 0 carries no packet id on the wire."""
    return PublishPacket.build(topic, bytes(payload), packet_id if qos else None, False, qos, False).to_bytes()
