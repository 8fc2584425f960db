"""Fixtures of the chaos tests: `device(tmp_path, port, token, samples, **cfg)` (chaosdev.ChaosDevice),
stopped at the end; `proxy(sim, **faults)` is in tests/conftest.py."""
import pytest

from chaosdev import ChaosDevice


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
