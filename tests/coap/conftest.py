"""Fixtures for tests/coap; the helpers are in coapdrive.py."""

import pytest

from coapdrive import Router, ScriptedPeer


@pytest.fixture
def peer_factory():
    peers = []

    def make(routes=None, **kw):
        handler = routes if callable(routes) and not isinstance(routes, dict) else Router(routes, **kw)
        p = ScriptedPeer(handler).start()
        peers.append(p)
        return p

    yield make
    for p in peers:
        p.stop()
    for p in peers:
        assert not p.errors, p.errors
