# The Supervisor's task (tbdevice/supervisor.py), loaded when it starts (Device.subscribe(),
# Device.supervise()), so that a Device that never starts it does not hold this code: it
# re-opens the link after a fault, probes a silent link, keeps the downlink registered and
# drives the board's hooks (watchdog, network rejoin), as supervisor.py's comment says. The
# functions take the Supervisor and work on its state.
import asyncio
import time

try:
    from micropython import const
except ImportError:  # CPython (type checks)

    def const(x):
        return x


from tbdevice.link import backoff

_TICK_MS = const(1000)  # the longest nap: the watchdog's feed and the expiry checks (supervisor._TICK_MS)
_PROBE_AGAIN_MS = const(5000)  # the next probe after an unanswered one
_PROBE_MS = const(4000)  # a probe's answer time with a watchdog to feed (the task waits for it)
_REJOIN_AFTER = const(2)  # unanswered probes in a row before the network itself is rebuilt
_REFUSED = const(16)  # registration back-off step after a refusal of the credentials: the maximum at once


async def run(sup):
    joins = 0  # network rebuilds since the server was last heard
    while True:
        sup._tick()
        hal = sup.hal
        if hal is not None and (not hal.associated() or sup.misses >= _REJOIN_AFTER):
            # The network is gone, or up yet the server silent: rebuild it, with back-off.
            sup.online = False
            joins += 1
            if await hal.rejoin(sup.misses >= _REJOIN_AFTER):
                sup.misses = 1  # associated again; online once the server answers: probe now
                sup._quiet = time.ticks_add(time.ticks_ms(), -_PROBE_AGAIN_MS)
            await sup._sleep(backoff(joins, 1000))
            continue
        if not sup.up:
            await sup._try_open()
            continue
        now = time.ticks_ms()
        heard = sup.link.heard()
        if heard is None:  # no liveness signal (HTTP): the network's state is all there is
            sup.online = True
        else:
            if time.ticks_diff(heard, sup._quiet) > 0:
                sup._quiet = heard
                sup.misses = 0
                sup.online = True
            silence = time.ticks_diff(now, sup._quiet)
            if sup.keepalive_ms and silence >= (
                    sup.keepalive_ms if sup.misses == 0 else min(sup.keepalive_ms, _PROBE_AGAIN_MS)):
                await _probe(sup)
                continue
        if sup.online:
            joins = 0
        if sup.downlink and sup._reg is None:
            _register(sup, now, heard)
        await _nap(sup, _TICK_MS)


async def _probe(sup):
    # RFC 7252 §4.3 ping; bounded so that a watchdog is fed in time.
    sup.pings += 1
    t = sup.ping_timeout_ms if sup.hal is None else min(sup.ping_timeout_ms, _PROBE_MS)
    try:
        alive = await sup.link.probe(t)
    except OSError:
        alive = False  # e.g. ECONNREFUSED (ICMP port unreachable) raised by the send itself
    sup._quiet = time.ticks_ms()
    if alive:
        sup.misses = 0
        sup.online = True
        return
    sup.misses += 1
    sup.online = False
    sup._say("keepalive: no answer to a ping, re-opening the link")
    sup.fault()


def _register(sup, now, heard):
    at = sup._reg_at
    if at is not None and time.ticks_diff(now, at) < 0:
        if not (sup._unheard and heard is not None and time.ticks_diff(heard, sup._reg_t0) > 0):
            return
    r = sup.link.keep_downlink(sup._renew)
    if r is not None:
        sup._renew = False
        sup._reg_t0 = now
        sup._reg = asyncio.create_task(_registering(sup, r))


async def _registering(sup, r):
    # A task of its own while it lasts: a registration may wait long for its answer, and
    # the supervisor's task must go on feeding the watchdog meanwhile.
    try:
        code = await r
    except OSError as e:
        code = -1
        sup.fault(e)
    sup._reg = None
    sup._unheard = code == -1
    if code == 0:
        sup._reg_fails = 0
        sup.refusing = False
        sup._reg_at = None
        return
    if code == 129:  # 4.01: the credentials are refused, which will not mend soon
        sup._reg_fails = _REFUSED
        sup.refused("subscriptions: 4.01")
    else:
        sup._reg_fails += 1
    sup._reg_at = time.ticks_add(time.ticks_ms(), backoff(sup._reg_fails, 1000))


async def _nap(sup, ms):
    # A sleep that wake() ends early (by cancelling it: the task's only use of cancel).
    sup._napping = True
    try:
        await asyncio.sleep_ms(ms)
    except asyncio.CancelledError:
        if sup._task is None:  # stop()
            raise
    sup._napping = False
