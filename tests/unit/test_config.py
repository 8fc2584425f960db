# firmware/config.py: defaults and one clear line per problem.
import config


def _err(cfg):
    try:
        config.validate(cfg)
    except config.ConfigError as e:
        return str(e)
    return None


def test_defaults():
    c = config.validate({"host": "h", "token": "t"})
    assert c["transport"] == "coap" and c["port"] == 5683 and c["payload"] == "json"
    assert c["telemetry_interval_ms"] == 5000 and c["state_dir"] == "."
    assert config.validate({"host": "h", "token": "t", "transport": "coaps", "tls": {"ca": "ca.pem"}})["port"] == 5684
    assert config.validate({"host": "h", "token": "t", "transport": "https", "tls": {"ca": "ca.pem"}})["port"] == 443
    assert config.validate({"host": "h", "token": "t", "transport": "http"})["port"] == 80


def test_https_needs_a_ca():
    assert "'tls.ca' is required for https" in _err({"host": "h", "token": "t", "transport": "https"})
    assert "'http.x' is not a known key" in _err({"host": "h", "token": "t", "transport": "http", "http": {"x": 1}})


def test_problems_name_the_key():
    assert "'host' is required" in _err({"token": "t"})
    assert "'token' is required" in _err({"host": "h"})
    assert "'x' is not a known key" in _err({"host": "h", "token": "t", "x": 1})
    assert "'port'" in _err({"host": "h", "token": "t", "port": "80"})
    assert "'ota.size' is not a known key" in _err({"host": "h", "token": "t", "ota": {"size": 1}})
    assert "'provision.device_key' is required" in _err({"host": "h", "provision": {"device_secret": "s"}})
    assert "JSON object" in _err([1])


def test_provision_instead_of_token():
    c = config.validate({"host": "h", "provision": {"device_key": "k", "device_secret": "s"}})
    assert "token" not in c


def test_power_saving_mode():
    c = config.validate({"host": "h", "token": "t"})
    assert c["power"] == {"mode": "always_on", "window_ms": 10000}
    c = config.validate({"host": "h", "token": "t", "power": {"mode": "psm", "window_ms": 2000}})
    assert c["power"] == {"mode": "psm", "window_ms": 2000}
    assert "'power.mode' must be always_on, psm or edrx" in _err({"host": "h", "token": "t", "power": {"mode": "nap"}})
    assert "'power.window_ms'" in _err({"host": "h", "token": "t", "power": {"mode": "psm", "window_ms": -1}})
    assert "'power.sleep' is not a known key" in _err({"host": "h", "token": "t", "power": {"sleep": 1}})
    assert "needs transport coap" in _err({"host": "h", "token": "t", "transport": "http", "power": {"mode": "edrx"}})


def test_queue_and_diagnostics():
    c = config.validate({"host": "h", "token": "t"})
    assert c["diagnostics_interval_ms"] == 0 and "queue" not in c
    q = {"limit": 8, "spill": True, "spill_limit": 100, "batch": 4, "gap_ms": 0, "retry_ms": 200, "retry_max_ms": 2000}
    c = config.validate({"host": "h", "token": "t", "queue": q, "diagnostics_interval_ms": 60000})
    assert c["queue"] == q and c["diagnostics_interval_ms"] == 60000
    assert "'queue.size' is not a known key" in _err({"host": "h", "token": "t", "queue": {"size": 1}})
    assert "'queue.limit' must be an integer >= 1" in _err({"host": "h", "token": "t", "queue": {"limit": 0}})
    assert "'queue.spill' must be true or false" in _err({"host": "h", "token": "t", "queue": {"spill": "yes"}})
    assert "'queue.batch'" in _err({"host": "h", "token": "t", "queue": {"batch": 2.5}})
    assert "'diagnostics_interval_ms'" in _err({"host": "h", "token": "t", "diagnostics_interval_ms": 10})
