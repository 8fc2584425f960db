"""Fixtures of the chaos tests: `proxy(sim, **faults)` (tools/udpproxy.py in front of tbsim's CoAP port)
and `device(tmp_path, port, token, samples, **cfg)` (chaosdev.ChaosDevice); both stopped at the end."""
import pytest

from chaosdev import ChaosDevice
from udpproxy import UdpProxy


@pytest.fixture
def proxy():
    started = []

    def start(sim, **faults):
        p = UdpProxy(to=("127.0.0.1", sim.coap_port), **faults).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def device():
    started = []

    def start(*args, **kw):
        d = ChaosDevice(*args, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
