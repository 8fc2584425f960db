# MQTT 3.1.1 packets as real peers write them, for tests/unit/test_mqttcodec.py (CPython and the
# unix port). CLIENT: what paho-mqtt 2.2.0 sent for each case (captured on a socket), SERVER:
# what amqtt 0.12.1's packet builders write (tbsim's encoders, tools/tbsim/mqttwire.py).
# tests/unit/test_mqttcodec_peers_host.py checks that both peers still write exactly these bytes.

# (name, hex, what our encoder is called with)
CLIENT = [
    ("CONNECT with user and password", "102300044d51545404c2003c000464657631000d41315f544553545f544f4b454e00027077",
     ("connect", "dev1", "A1_TEST_TOKEN", "pw", 60)),
    ("PUBLISH QoS 0", "302d001776312f646576696365732f6d652f74656c656d657472797b2274656d7065726174757265223a32312e357d",
     ("publish", "v1/devices/me/telemetry", b'{"temperature":21.5}', 0, 0)),
    ("PUBLISH QoS 1", "322f001776312f646576696365732f6d652f74656c656d6574727900027b2274656d7065726174757265223a32312e357d",
     ("publish", "v1/devices/me/telemetry", b'{"temperature":21.5}', 1, 2)),
    ("SUBSCRIBE two filters", "823b0003001876312f646576696365732f6d652f6174747269627574657301001b76312f646576696365732f6d"
     "652f7270632f726571756573742f2b01",
     ("subscribe", 3, [("v1/devices/me/attributes", 1), ("v1/devices/me/rpc/request/+", 1)])),
    ("PUBACK", "40020201", ("puback", 513)),
    ("PINGREQ", "c000", ("pingreq",)),
    ("DISCONNECT", "e000", ("disconnect",)),
]

# (name, hex, what our decoder reads from it)
SERVER = [
    ("CONNACK accepted", "20020000", ("connack", 0, 0)),
    ("CONNACK refused 0x05, session present", "20020105", ("connack", 1, 5)),
    ("PUBACK", "40020007", ("ack", 7)),
    ("SUBACK granted 1 and refused", "900400030180", ("suback", 3, [1, 0x80])),
    ("PINGRESP", "d000", ("pingresp",)),
    ("PUBLISH QoS 0", "3021001876312f646576696365732f6d652f617474726962757465737b226b223a317d",
     ("publish", 0, "v1/devices/me/attributes", 0, b'{"k":1}')),
    # a 200-byte binary firmware chunk at QoS 1, packet id 65535: a two-byte Remaining Length
    ("PUBLISH QoS 1 chunk", "32e401001876322f66772f726573706f6e73652f312f6368756e6b2f30ffff" + "".join(
        "%02x" % i for i in range(200)), ("publish", 1, "v2/fw/response/1/chunk/0", 65535, bytes(range(200)))),
]
