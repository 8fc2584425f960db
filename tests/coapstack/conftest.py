"""Fixtures for tests/coapstack; the helpers are in coapdrive.py."""

import pytest

import coapdrive
from coapdrive import Router, ScriptedPeer


@pytest.fixture(params=["internals", "public"])
def sched_path(request):
    """Each test with a peer runs twice: the client seeing asyncio's run queue (the inline
    wait on), and with asyncio's public API only (lib/coap/sched.py: the inline wait off)."""
    coapdrive.SCHED_INTERNALS = request.param == "internals"
    yield request.param
    coapdrive.SCHED_INTERNALS = True


@pytest.fixture
def peer_factory(sched_path):
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
