# Why an MQTT connection failed, in words that say what to change (docs/getting-started.md, "MQTT: when
# it does not connect"): the port or the transport (TLS or not) is the usual mistake, then the CA and
# the payload type. Loaded by tbdevice.mqttlink only on such a failure: a working device never pays
# for these strings.
_ECONNRESET = 104
_EPROTO = 71
_ECONNREFUSED = 111
_PORTS = "check `port` (ThingsBoard: 1883 for mqtt, 8883 for mqtts)"


def connect_failed(host, port, tls, e, malformed=False):
    """The OSError to raise for e, a failure before the CONNACK (or a CONNACK 0x03; malformed: a reply
    that is not MQTT); its errno is e's, since the Supervisor tells a host name that does not resolve
    apart by it (returned as is)."""
    a = e.args
    code = a[0] if a else None
    if type(code) is not int or code < 0:
        return e  # getaddrinfo's: the Supervisor says the host does not resolve
    text = str(a[1]).strip() if len(a) > 1 else ""
    for p in ("mqtt: ", "mqtts: TLS: "):
        if text.startswith(p):
            text = text[len(p):].strip()
    where = "%s:%d" % (host, port)
    if text == "CONNACK 3":  # ThingsBoard's answer to a device whose profile has another transport (wire-mqtt §2.3)
        why = ("CONNACK 3: server unavailable (ThingsBoard: the device's profile has a transport other than MQTT or"
               " Default: change it, or the device's `transport`)")
    elif text.startswith("CONNACK"):
        return e
    elif code == _ECONNREFUSED:
        why = "nothing listens at %s (connection refused): %s" % (where, _PORTS)
    elif malformed:  # mqttcodec.Malformed: what came back is not MQTT
        why = "%s does not speak MQTT (%s): %s" % (where, text, _PORTS)
    elif tls and ("ertificate" in text or "CERT" in text or "verif" in text):
        why = "the certificate of %s does not chain to `tls.ca` (%s): give the CA that signed the server's" \
              " certificate" % (where, text.replace("\n", " ").strip())
    elif tls and code in (_ECONNRESET, _EPROTO):
        why = "no TLS at %s (%s): is it a plain MQTT port? mqtts is 8883 on ThingsBoard" % (where, text or code)
    elif code == _ECONNRESET:
        why = "%s closed the connection before the CONNACK: a TLS port (use `transport` mqtts)? %s" % (where, _PORTS)
    else:
        return e
    return OSError(code, "mqtt: " + why)


def unanswered(why, n):
    # ThingsBoard closes the connection, without a PUBACK, on a payload it cannot parse (wire-mqtt
    # §3.5): with a `payload` that is not the profile's, that happens on every connection.
    return "%s, %d PUBLISH unanswered (ThingsBoard does that with a payload it cannot parse: is `payload` the" \
           " device profile's MQTT payload type, JSON or PROTOBUF?)" % (why, n)
