# coaps in config.json (issue 8, spec §12): the server is verified unless the config says
# otherwise in so many words, X.509 replaces the token, blocks fit the 1024-byte DTLS limit.
import pytest


import config


def _v(**kw):
    cfg = {"host": "h", "transport": "coaps"}
    cfg.update(kw)
    return config.validate(cfg)


def _bad(fragment, **kw):
    with pytest.raises(config.ConfigError) as e:
        _v(**kw)
    assert fragment in str(e.value)


def test_coaps_needs_a_ca_unless_verify_is_false():
    _bad("'tls.ca' is required for coaps", token="t")
    _bad("'tls.ca' is required for coaps", token="t", tls={"cert": "c.pem", "key": "k.pem"})
    assert _v(token="t", tls={"verify": False})["port"] == 5684
    _bad("'tls.verify' must be true or false", token="t", tls={"ca": "ca.pem", "verify": "no"})


def test_x509_certificate_replaces_the_token():
    c = _v(tls={"ca": "ca.pem", "cert": "dev.pem", "key": "dev.key"})
    assert "token" not in c
    _bad("'token' is required", tls={"ca": "ca.pem"})
    _bad("go together", token="t", tls={"ca": "ca.pem", "cert": "dev.pem"})
    _bad("go together", token="t", tls={"ca": "ca.pem", "key": "dev.key"})
    # a certificate means nothing to plain CoAP
    with pytest.raises(config.ConfigError):
        config.validate({"host": "h", "tls": {"cert": "dev.pem", "key": "dev.key"}})


def test_coaps_block_size_stays_within_the_dtls_limit():
    assert _v(token="t", tls={"ca": "ca.pem"}, coap={"block_size": 512})
    _bad("'coap.block_size' must be 16-512 for coaps", token="t", tls={"ca": "ca.pem"}, coap={"block_size": 1024})


def test_the_example_config_is_valid_and_holds_placeholders_only():
    import json
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "firmware", "config.example.json")
    with open(path) as f:
        cfg = json.load(f)
    assert config.validate(cfg)["transport"] == "coaps"
    assert cfg["token"].startswith("YOUR_") and cfg["wifi"]["password"].startswith("YOUR_")
