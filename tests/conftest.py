"""Shared fixtures. `tbsim` runs tools/tbsim as a subprocess on free loopback ports (see tests/tbsim);
the helpers live in tests/tbtest.py."""

import pytest

from tbtest import TBSIM_DEVICE, TBSIM_TOKEN, TbSimProcess, wait_until  # noqa: F401 (re-exported)


@pytest.fixture
def tbsim_factory():
    """Call with extra CLI args (e.g. "--ack-timeout", "0.2") and/or devices=[(name, token)]."""
    started = []

    def start(*args, devices=((TBSIM_DEVICE, TBSIM_TOKEN),)):
        sim = TbSimProcess(args, devices=devices)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def tbsim(tbsim_factory):
    """tbsim with ThingsBoard's default timings, device Thermo-1 / A1_TEST_TOKEN and a provisioning profile."""
    return tbsim_factory()


@pytest.fixture
def proxy():
    """proxy(sim, **faults): tools/udpproxy.py in front of tbsim's CoAP port; stopped at the end."""
    from udpproxy import UdpProxy

    started = []

    def start(sim, **faults):
        p = UdpProxy(to=("127.0.0.1", sim.coap_port), **faults).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
