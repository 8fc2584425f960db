# firmware/config.py for transport mqtt / mqtts (docs/getting-started.md): ports, credentials, tuning.
import config


def _err(cfg):
    try:
        config.validate(cfg)
    except config.ConfigError as e:
        return str(e)
    return None


def test_ports_and_credentials():
    c = config.validate({"host": "h", "token": "t", "transport": "mqtt"})
    assert c["port"] == 1883 and "mqtt" not in c
    c = config.validate({"host": "h", "token": "t", "transport": "mqtts", "tls": {"ca": "ca.pem"}})
    assert c["port"] == 8883
    # MQTT_BASIC: client id, user name and password in place of the token
    basic = {"client_id": "c1", "username": "u1", "password": "p1", "keepalive_s": 30, "timeout_ms": 5000,
             "inline_ms": 0}
    assert config.validate({"host": "h", "transport": "mqtt", "mqtt": basic})["mqtt"] == basic
    assert _err({"host": "h", "transport": "mqtt", "mqtt": {"client_id": "only"}}) is None
    # X.509 over mqtts: the client certificate is the credentials
    x509 = {"ca": "ca.pem", "cert": "dev.pem", "key": "dev.key"}
    assert _err({"host": "h", "transport": "mqtts", "tls": x509}) is None
    assert _err({"host": "h", "transport": "mqtts", "provision": {"device_key": "k", "device_secret": "s"},
                 "tls": {"ca": "ca.pem"}}) is None
    # a protobuf device profile (wire-mqtt §12.2), with the profile's schema module or the defaults
    for t in ("mqtt", "mqtts"):
        c = config.validate({"host": "h", "token": "t", "transport": t, "payload": "protobuf", "proto": "appprofile",
                             "tls": {"ca": "ca.pem"}})
        assert (c["payload"], c["proto"]) == ("protobuf", "appprofile")
    assert _err({"host": "h", "token": "t", "transport": "mqtt", "payload": "protobuf"}) is None
    # HTTP stays JSON only
    for t in ("http", "https"):
        assert "protobuf needs transport coap(s) or mqtt(s)" in _err({"host": "h", "token": "t", "transport": t,
                                                                     "payload": "protobuf", "tls": {"ca": "c"}})


def test_problems_name_the_key():
    assert "'token' is required" in _err({"host": "h", "transport": "mqtt"})
    assert "'token' is required" in _err({"host": "h", "transport": "mqtt", "tls": {"cert": "c", "key": "k"}})
    assert "'tls.ca' is required for mqtts" in _err({"host": "h", "token": "t", "transport": "mqtts"})
    assert "'tls.cert' and 'tls.key' go together" in _err(
        {"host": "h", "token": "t", "transport": "mqtts", "tls": {"ca": "c", "cert": "x"}})
    assert "'mqtt.user' is not a known key" in _err({"host": "h", "token": "t", "transport": "mqtt",
                                                    "mqtt": {"user": "u"}})
    assert "'mqtt.password' needs 'mqtt.username'" in _err(
        {"host": "h", "transport": "mqtt", "mqtt": {"client_id": "c", "password": "p"}})
    assert "two kinds of credentials" in _err({"host": "h", "token": "t", "transport": "mqtt",
                                               "mqtt": {"username": "u"}})
    assert "'mqtt.keepalive_s'" in _err({"host": "h", "token": "t", "transport": "mqtt", "mqtt": {"keepalive_s": -1}})
    assert "'mqtt.timeout_ms'" in _err({"host": "h", "token": "t", "transport": "mqtt", "mqtt": {"timeout_ms": "1"}})
    assert "'mqtt.inline_ms'" in _err({"host": "h", "token": "t", "transport": "mqtt", "mqtt": {"inline_ms": 5000}})
    assert "'mqtt.client_id' must be a string" in _err({"host": "h", "transport": "mqtt", "mqtt": {"client_id": 7}})
    assert "'mqtt' must be an object" in _err({"host": "h", "token": "t", "transport": "mqtt", "mqtt": "x"})
    assert "one of coap, coaps, http, https, mqtt, mqtts" in _err({"host": "h", "token": "t", "transport": "amqp"})
    # power saving is CoAP's (not over MQTT yet)
    assert "needs transport coap" in _err({"host": "h", "token": "t", "transport": "mqtt", "power": {"mode": "psm"}})


def test_newcomer_mistakes():
    # "MQTT" as the docs' headings spell it: the value to write instead, not the list of six
    assert _err({"host": "h", "token": "t", "transport": "MQTT"}) == \
        "config: 'transport' must be lower case: \"mqtt\" (got 'MQTT')"
    # JSON's true is an int to Python: not a keep-alive of 1 s
    for k in ("keepalive_s", "timeout_ms", "inline_ms"):
        assert "'mqtt.%s' must be an integer" % k in _err({"host": "h", "token": "t", "transport": "mqtt",
                                                           "mqtt": {k: True}})
    assert "'mqtt.keepalive_s' must be an integer" in _err({"host": "h", "token": "t", "transport": "mqtt",
                                                            "mqtt": {"keepalive_s": "60"}})
    assert "'mqtt.keep_alive' is not a known key (known: client_id, username, password, keepalive_s" in \
        _err({"host": "h", "token": "t", "transport": "mqtt", "mqtt": {"keep_alive": 60}})
    # coaps' "verify": false does not exist for mqtts: said, not ignored
    assert "'tls.verify': false is for coaps only" in _err({"host": "h", "token": "t", "transport": "mqtts",
                                                            "tls": {"ca": "ca.pem", "verify": False}})
