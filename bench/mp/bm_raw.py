# The lower bounds: a blocking socket sends a pre-encoded request and readinto()s the
# reply into a preallocated buffer. No encoding, no allocation, no asyncio.
#   raw       CON POST telemetry (JSON), piggybacked ACK 2.01
#   rawnon    NON POST telemetry (JSON), NON 2.01
#   rawproto  CON POST telemetry (protobuf), piggybacked ACK 2.01
#   rawhttp   HTTP POST telemetry (JSON) on a kept-alive TCP connection, 200 with no body
#   rawhttpproto  the same with the protobuf body
#   rawmqtt   MQTT PUBLISH at QoS 1 (JSON) on a TCP connection, its 4-byte PUBACK
#   rawattr   receive a CON attribute notification, send the pre-encoded empty ACK
#   rawrpc    receive a CON RPC notification, ACK it, POST the pre-encoded reply, read its ACK
import socket

from bm_common import HTTP_RESPONSE, TOKEN, addr, coap_request, http_request, measure, mqtt_connect, mqtt_publish, payload_bytes, \
    proto_payload, raw_request


def run(case, port, metric, n, warm):
    buf = bytearray(1280)
    if case in ("rawhttp", "rawhttpproto"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(addr(port))
        req = http_request(port, proto_payload() if case == "rawhttpproto" else payload_bytes())
        rlen = len(HTTP_RESPONSE)

        def loop(k):
            for _ in range(k):
                s.write(req)
                s.readinto(buf, rlen)  # a stream: exactly the response's bytes

        check = lambda: bytes(buf[:rlen]) == HTTP_RESPONSE
    elif case == "rawmqtt":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(addr(port))
        s.setsockopt(getattr(socket, "IPPROTO_TCP", 6), getattr(socket, "TCP_NODELAY", 1), 1)  # as tbdevice.mqttconn
        s.write(mqtt_connect())
        s.readinto(buf, 4)  # CONNACK
        if buf[0] != 0x20 or buf[3] != 0:
            raise SystemExit("rawmqtt: CONNACK %r" % bytes(buf[:4]))
        req = mqtt_publish(payload_bytes())

        def loop(k):
            for _ in range(k):
                s.write(req)
                s.readinto(buf, 4)  # the PUBACK

        check = lambda: buf[0] == 0x40 and buf[3] == 1
    elif case in ("rawattr", "rawrpc"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(addr(port))
        s.settimeout(5)
        rpc = case == "rawrpc"
        base = "api/v1/" + TOKEN + "/"
        reg = coap_request(base + ("rpc" if rpc else "attributes"), b"", 0, 1, True)
        # bench/notifier.py's fixed shapes: Observe values take 3 bytes; the registration's
        # answer is 2.05 {} (attributes) or 2.03 (rpc); notifications have fixed lengths.
        s.send(reg)
        s.readinto(buf, 4 + 4 + 4 + (0 if rpc else 3))
        nlen = 4 + 4 + 4 + 1 + (len(b'{"id":100000,"method":"setGpio","params":{"pin":2,"value":1}}') if rpc else len(b'{"setpoint":21.5}'))
        ack = bytearray(b"\x60\x00\x00\x00")
        reply = coap_request(base + "rpc/100000", b'{"pin":2,"value":1}', token=b"")  # as the stack: the empty token
        alen = 4

        def loop(k):
            for _ in range(k):
                s.readinto(buf, nlen)
                ack[2] = buf[2]
                ack[3] = buf[3]
                s.send(ack)
                if rpc:
                    s.send(reply)
                    s.readinto(buf, alen)

        check = lambda: True
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(addr(port))
        s.settimeout(5)  # a lost datagram ends the run with OSError instead of hanging it
        if case == "rawproto":
            req = raw_request(0, proto_payload())
        else:
            req = raw_request(1 if case == "rawnon" else 0)
        # readinto() on a blocking socket reads until it has as many bytes as asked for
        # (stream semantics: queued datagrams glued together), so ask for exactly the reply's
        # size: the 4-byte header and the echoed token, no options, no payload.
        rlen = 4 + (req[0] & 15)

        def loop(k):
            for _ in range(k):
                s.send(req)
                s.readinto(buf, rlen)

        check = lambda: buf[1] == 65 and buf[0] & 0x30 == (0x10 if case == "rawnon" else 0x20)

    res = {}
    measure(loop, metric, n, warm, res)
    if n + warm and not check():
        raise SystemExit("%s: bad reply %r" % (case, bytes(buf[:40])))
    s.close()
    return res
