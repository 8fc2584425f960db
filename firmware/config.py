# Loading and validating config.json (DESIGN §3). A bad or missing key is one clear
# line naming it: ConfigError("config: 'host' is required").
import json
import os

_TRANSPORTS = {"coap": 5683, "coaps": 5684, "http": 80, "https": 443, "mqtt": 1883, "mqtts": 8883}
_KEYS = (
    "host", "port", "transport", "token", "provision", "payload", "proto", "telemetry_interval_ms",
    "ota", "tls", "state_dir", "wifi", "coap", "http", "mqtt", "log", "power", "queue", "diagnostics_interval_ms",
)


class ConfigError(ValueError):
    pass


def _need(cond, msg):
    if not cond:
        raise ConfigError("config: " + msg)


def _str(cfg, key, required=False):
    v = cfg.get(key)
    if v is None:
        _need(not required, "'%s' is required" % key)
        return
    _need(isinstance(v, str) and v, "'%s' must be a non-empty string" % key)


def _obj(cfg, key, fields, required=()):
    v = cfg.get(key)
    if v is None:
        return
    _need(isinstance(v, dict), "'%s' must be an object" % key)
    for f in v:
        _need(f in fields, "'%s.%s' is not a known key (known: %s)" % (key, f, ", ".join(fields)))
    for f in required:
        _need(isinstance(v.get(f), str) and v.get(f), "'%s.%s' is required" % (key, f))


def _ota(o):
    _need(o.get("mode", "chunk") in ("chunk", "block2"), "'ota.mode' must be chunk or block2")
    cs = o.get("chunk_size", 1024)
    _need(isinstance(cs, int) and 16 <= cs <= 1024, "'ota.chunk_size' must be an integer 16-1024 (spec §10.2)")
    _need(o.get("path", "fw") in ("fw", "api"), "'ota.path' must be fw or api")
    for k in ("timeout_ms", "retry_ms", "health_timeout_ms"):
        v = o.get(k, 1)
        _need(isinstance(v, int) and v > 0, "'ota.%s' must be a positive integer" % k)
    # the free heap an update needs beside the app; with less it runs in a boot of its own (docs/ota.md)
    _need(_int(o.get("beside_app_kb", 0)) and o.get("beside_app_kb", 0) >= 0,
          "'ota.beside_app_kb' must be an integer >= 0")
    # https package URLs (fw_url): the CA their server must chain to (else tls.ca); only an
    # explicit false skips the check (firmware/otaload.url_tls)
    _need(isinstance(o.get("verify", True), bool), "'ota.verify' must be true or false")
    ca = o.get("ca")
    _need(ca is None or (isinstance(ca, str) and ca), "'ota.ca' must be the path of a CA file")


def _queue(q):
    for k, lo in (("limit", 1), ("spill_limit", 1), ("batch", 1), ("gap_ms", 0), ("retry_ms", 1),
                  ("retry_max_ms", 1)):
        v = q.get(k, lo)
        _need(isinstance(v, int) and not isinstance(v, bool) and v >= lo,
              "'queue.%s' must be an integer >= %d" % (k, lo))
    _need(isinstance(q.get("spill", False), bool), "'queue.spill' must be true or false")


def _coaps(tls, coap):
    # DTLS (spec §12): the server is verified unless told otherwise in so many words; a
    # message stays within ThingsBoard's 1024-byte DTLS limit with blocks of 512 at most.
    _need(isinstance(tls.get("verify", True), bool), "'tls.verify' must be true or false")
    _need(tls.get("ca") or tls.get("verify") is False,
          "'tls.ca' is required for coaps (the CA file that the server's certificate must chain to;"
          " 'tls.verify': false skips the check)")
    _need(bool(tls.get("cert")) == bool(tls.get("key")), "'tls.cert' and 'tls.key' go together (certificate and key)")
    bs = coap.get("block_size", 512)
    _need(isinstance(bs, int) and 16 <= bs <= 512,
          "'coap.block_size' must be 16-512 for coaps (ThingsBoard takes at most 1024 bytes per DTLS message)")


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)  # JSON's true is an int to Python


def _mqtt(cfg, t):
    # MQTT_BASIC credentials (client id, user name, password) and tuning (docs/wire-mqtt.md §2.2).
    m = cfg.get("mqtt") or {}
    for k in ("client_id", "username", "password"):
        v = m.get(k)
        _need(v is None or isinstance(v, str), "'mqtt.%s' must be a string" % k)
    _need(m.get("password") is None or m.get("username"), "'mqtt.password' needs 'mqtt.username' (MQTT 3.1.1)")
    _need(not (m.get("username") and cfg.get("token")),
          "'token' and 'mqtt.username' are two kinds of credentials (the token is the MQTT user name): give one")
    ka = m.get("keepalive_s", 60)
    _need(_int(ka) and 0 <= ka <= 65535, "'mqtt.keepalive_s' must be an integer 0-65535")
    to = m.get("timeout_ms", 10000)
    _need(_int(to) and to >= 100, "'mqtt.timeout_ms' must be an integer >= 100")
    il = m.get("inline_ms", 50)
    _need(_int(il) and 0 <= il <= 1000, "'mqtt.inline_ms' must be an integer 0-1000")
    if t == "mqtts":
        tls = cfg.get("tls") or {}
        _need(tls.get("verify", True) is True,
              "'tls.verify': false is for coaps only: mqtts always checks the server's certificate against 'tls.ca'")
        _need(tls.get("ca"), "'tls.ca' is required for mqtts (the CA file that the server's certificate must chain to)")
        _need(bool(tls.get("cert")) == bool(tls.get("key")),
              "'tls.cert' and 'tls.key' go together (certificate and key)")


def validate(cfg):
    """Fill defaults in place and return cfg; raise ConfigError on the first problem."""
    _need(isinstance(cfg, dict), "the file must hold a JSON object")
    for k in cfg:
        _need(k in _KEYS, "'%s' is not a known key" % k)
    _str(cfg, "host", True)
    t = cfg.setdefault("transport", "coap")
    _need(not (isinstance(t, str) and t != t.lower() and t.lower() in _TRANSPORTS),
          "'transport' must be lower case: \"%s\" (got %r)" % (t.lower() if isinstance(t, str) else t, t))
    _need(t in _TRANSPORTS, "'transport' must be one of coap, coaps, http, https, mqtt, mqtts (got %r)" % (t,))
    port = cfg.setdefault("port", _TRANSPORTS[t])
    _need(isinstance(port, int) and 0 < port < 65536, "'port' must be an integer 1-65535")
    _str(cfg, "token")
    _obj(cfg, "provision", ("device_key", "device_secret", "device_name"), ("device_key", "device_secret"))
    # X.509 over coaps or mqtts: the client certificate is the device's credentials (spec §12).
    x509 = t in ("coaps", "mqtts") and isinstance(cfg.get("tls"), dict) and cfg["tls"].get("cert")
    _obj(cfg, "mqtt", ("client_id", "username", "password", "keepalive_s", "timeout_ms", "inline_ms"))
    m = cfg.get("mqtt") or {}
    basic = t in ("mqtt", "mqtts") and (m.get("username") or m.get("client_id"))
    _need(cfg.get("token") or cfg.get("provision") or x509 or basic,
          "'token' is required (or 'provision' to obtain one, 'tls.cert' for X.509 over coaps or mqtts,"
          " 'mqtt.username' / 'mqtt.client_id' for MQTT_BASIC)")
    _need(cfg.setdefault("payload", "json") in ("json", "protobuf"), "'payload' must be json or protobuf")
    _str(cfg, "proto")
    # The HTTP device API speaks JSON only; protobuf profiles are CoAP's and MQTT's (spec §11, §15; wire-mqtt §12).
    _need(cfg["payload"] == "json" or t[:4] != "http", "'payload': protobuf needs transport coap(s) or mqtt(s)")
    iv = cfg.setdefault("telemetry_interval_ms", 5000)
    _need(isinstance(iv, int) and iv >= 100, "'telemetry_interval_ms' must be an integer >= 100")
    _obj(cfg, "ota", ("mode", "chunk_size", "path", "timeout_ms", "retry_ms", "health_timeout_ms", "ca", "verify",
                      "beside_app_kb"))
    _ota(cfg.get("ota") or {})
    _obj(cfg, "tls", ("ca", "cert", "key", "verify"))
    _obj(cfg, "wifi", ("ssid", "password"))
    _obj(cfg, "coap", ("ack_timeout_ms", "max_retransmit", "nstart", "timeout_ms", "block_size", "con", "inline_ms",
                       "empty_token"))
    _obj(cfg, "http", ("timeout_ms", "poll_ms"))
    if t == "https":
        _need(isinstance(cfg.get("tls"), dict) and cfg["tls"].get("ca"),
              "'tls.ca' is required for https (the CA file that the server's certificate must chain to)")
    if t == "coaps":
        _coaps(cfg.get("tls") or {}, cfg.get("coap") or {})
    if t in ("mqtt", "mqtts"):
        _mqtt(cfg, t)
    _obj(cfg, "power", ("mode", "window_ms"))
    pw = cfg.setdefault("power", {})
    mode = pw.setdefault("mode", "always_on")
    _need(mode in ("always_on", "psm", "edrx"), "'power.mode' must be always_on, psm or edrx (got %r)" % (mode,))
    w = pw.setdefault("window_ms", 10000)  # ThingsBoard's default PSM timer and paging window (spec §13)
    _need(isinstance(w, int) and w >= 0, "'power.window_ms' must be an integer >= 0")
    _need(mode == "always_on" or t in ("coap", "coaps"), "'power.mode' %s needs transport coap or coaps" % mode)
    _obj(cfg, "queue", ("limit", "spill", "spill_limit", "batch", "gap_ms", "retry_ms", "retry_max_ms"))
    _queue(cfg.get("queue") or {})
    dg = cfg.setdefault("diagnostics_interval_ms", 0)
    _need(isinstance(dg, int) and (dg == 0 or dg >= 1000), "'diagnostics_interval_ms' must be 0 (off) or an integer >= 1000")
    _str(cfg, "state_dir")
    cfg.setdefault("state_dir", ".")
    return cfg


def check_state_dir(cfg):
    """state_dir must be a directory that exists: the credentials, OTA slots and spilled samples go
    there, and a board's file system cannot be told apart from a typo otherwise."""
    d = cfg["state_dir"]
    try:
        mode = os.stat(d)[0]
    except OSError:
        mode = 0
    _need(mode & 0x4000, "'state_dir' %s is not a directory that exists (create it first)" % d)  # S_IFDIR


def load(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError("config: cannot read %s" % path)
    try:
        cfg = json.loads(text)
    except ValueError:
        raise ConfigError("config: %s is not valid JSON" % path)
    validate(cfg)
    check_state_dir(cfg)
    return cfg
