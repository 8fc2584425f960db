# One owner of "is the server reachable" (the shape of Peter Hinch's mqtt_as; DESIGN §4.6).
# Whoever sees a link fault (an OSError, a DTLS session gone) calls fault(); whoever needs
# the link awaits link_up(). The supervisor task, once started (Device.subscribe(),
# Device.supervise()), owns everything else:
#   - re-opening the link after a fault, with back-off (tbdevice.link.backoff);
#   - probing a silent link (a CoAP ping after keepalive_ms without a datagram; no answer is a
#     fault) over links that can tell when the server was last heard (link.heard());
#   - keeping the downlink registered (link.keep_downlink()): after every re-open, after a
#     subscription ended or expired, with back-off after a failure, at once when the server is
#     heard again after an attempt that got no answer at all;
#   - through the board's hooks (`hal`): the watchdog, the network (Wi-Fi) and its rejoin:
#       hal.tick(online)     at least once a second: feed the watchdog, show `online` (LED, log)
#       hal.associated()     False when the network interface lost its link (Wi-Fi association)
#       await hal.rejoin(force)   rebuild the network link (force: even if it looks up);
#                            True when it is up again
# Without a task (a Device that never subscribes, BlockingDevice), link_up() re-opens the link
# itself. Only the receive path says when the server was heard: nothing here writes it.
import asyncio
import time

from micropython import const

from tbdevice.link import backoff

_TICK_MS = 1000  # the longest sleep of the task: the watchdog's feed and the expiry checks
_PROBE_AGAIN_MS = 5000  # the next probe after an unanswered one
_PROBE_MS = 4000  # a probe's answer time with a watchdog to feed (the task waits for it)
_REJOIN_AFTER = 2  # unanswered probes in a row before the network itself is rebuilt
_ECONNREFUSED = const(111)  # the same errno on Linux, lwIP (ESP32, Pico W) and MicroPython's own table
_REFUSED = 16  # registration back-off step after a refusal of the credentials: the maximum at once


class Supervisor:
    def __init__(self, link, log=None):
        self.link = link
        self.log = log
        self.hal = None
        self.up = False  # the link is open
        self.online = True  # the server is taken to answer until a fault, a failed open or probe says not
        self.generation = 0  # counts opens of the link (the Device's reconnects: all but the first)
        self.pings = 0
        self.fails = 0  # faults and failed opens since the link last worked (Device resets it)
        self.misses = 0  # unanswered probes since the server was last heard
        self.keepalive_ms = 0  # no datagram for this long: probe (0: never)
        self.ping_timeout_ms = 10000
        self.refusing = False  # the server refuses the credentials (said once: refused())
        self.downlink = False  # keep the downlink registered
        self._renew = False  # register all of the downlink again (a new link)
        self._reg = None  # the registration running (a short-lived task)
        self._reg_fails = 0
        self._reg_at = None  # ticks before which no registration is tried, or None
        self._reg_t0 = 0  # when the last registration that got no answer was tried
        self._unheard = False
        self._quiet = 0  # ticks from which silence is counted (open, probe)
        self._up = asyncio.Event()
        self._opening = False  # one open at a time; the others wait for it (_up)
        self._task = None
        self._napping = False

    def _say(self, text):
        if self.log:
            self.log(text)

    # ---- what everyone else calls -----------------------------------------------------
    def start(self, hal=None, keepalive_ms=None, downlink=False):
        """Start the task (once) and add to what it does: the board's hooks, probing every
        keepalive_ms of silence, keeping the downlink registered."""
        if hal is not None:
            self.hal = hal
        if keepalive_ms is not None:
            self.keepalive_ms = keepalive_ms
        if downlink:
            self.downlink = self._renew = True
            self.link.ended = self._ended
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self.wake()

    async def stop(self):
        t, self._task = self._task, None
        self._napping = False
        if t is not None:
            t.cancel()
        r, self._reg = self._reg, None
        if r is not None:
            r.cancel()

    def fault(self, e=None):
        """A link fault: the link is dropped now and re-opened after a back-off (down())."""
        if self.up:
            if e is not None and self.log:
                self._say("link down: " + _text(e, self.link))
            self.fails += 1
            self.down()
        self.wake()

    def down(self):
        """Drop the link now: the task re-opens it, or the next link_up() when no task runs."""
        if self.up:
            self.up = self.online = False
            self._up.clear()
            self.link.drop()
        self.wake()

    async def link_up(self):
        """Returns once the link is open."""
        while not self.up:
            if self._task is None:
                await self.open()
            else:
                self.wake()
                await self._up.wait()

    async def open(self, first=False):
        """Open the link, retrying with back-off until it opens. first (Device.connect):
        a host name that does not resolve raises OSError instead of being retried."""
        while not self.up:
            await self._try_open(first)

    async def _try_open(self, first=False):
        # One try, after the back-off its failures call for; while one runs, others wait for it.
        if self._opening:
            await self._up.wait()
            return
        self._opening = True
        try:
            if self.fails:
                await self._sleep(backoff(self.fails))
            await self.link.open()
        except OSError as e:
            if first and _unresolved(e):
                # At connect() an unresolvable name is most likely a wrong host: tell the
                # caller rather than retry forever in silence.
                raise
            self.fails += 1
            self.online = False
            if self.log:
                self._say("link: %s, retrying" % _text(e, self.link))
            return
        finally:
            self._opening = False
        self.generation += 1
        self.up = True
        self._quiet = time.ticks_ms()
        self._renew = self.downlink
        self._reg_at = None
        self._up.set()

    def wake(self):
        """Run the task's next round now (it sleeps at most _TICK_MS otherwise)."""
        if self._napping and self._task is not None:
            self._napping = False
            self._task.cancel()  # caught in _nap: ends the sleep early

    # ---- the task ---------------------------------------------------------------------
    async def _run(self):
        # The task outlives a heap with no room (a MemoryError from any round): without it
        # the link is never repaired again and the board's watchdog starves.
        while True:
            try:
                await self._rounds()
            except MemoryError:
                self._napping = False  # a wake() now must not cancel the pause below
                self._say("supervisor: out of memory; going on in 1 s")  # a constant: said without heap
                await self._sleep(1000)

    async def _rounds(self):
        joins = 0  # network rebuilds since the server was last heard
        while True:
            self._tick()
            hal = self.hal
            if hal is not None and (not hal.associated() or self.misses >= _REJOIN_AFTER):
                # The network is gone, or up yet the server silent: rebuild it, with back-off.
                self.online = False
                joins += 1
                if await hal.rejoin(self.misses >= _REJOIN_AFTER):
                    self.misses = 1  # associated again; online once the server answers: probe now
                    self._quiet = time.ticks_add(time.ticks_ms(), -_PROBE_AGAIN_MS)
                await self._sleep(backoff(joins, 1000))
                continue
            if not self.up:
                await self._try_open()
                continue
            now = time.ticks_ms()
            heard = self.link.heard()
            if heard is None:  # no liveness signal (HTTP): the network's state is all there is
                self.online = True
            else:
                if time.ticks_diff(heard, self._quiet) > 0:
                    self._quiet = heard
                    self.misses = 0
                    self.online = True
                silence = time.ticks_diff(now, self._quiet)
                if self.keepalive_ms and silence >= (
                        self.keepalive_ms if self.misses == 0 else min(self.keepalive_ms, _PROBE_AGAIN_MS)):
                    await self._probe()
                    continue
            if self.online:
                joins = 0
            if self.downlink and self._reg is None:
                self._register(now, heard)
            await self._nap(_TICK_MS)

    def _tick(self):
        if self.hal is not None:
            self.hal.tick(self.online)

    async def _probe(self):
        # RFC 7252 §4.3 ping; bounded so that a watchdog is fed in time.
        self.pings += 1
        t = self.ping_timeout_ms if self.hal is None else min(self.ping_timeout_ms, _PROBE_MS)
        try:
            alive = await self.link.probe(t)
        except OSError:
            alive = False  # e.g. ECONNREFUSED (ICMP port unreachable) raised by the send itself
        self._quiet = time.ticks_ms()
        if alive:
            self.misses = 0
            self.online = True
            return
        self.misses += 1
        self.online = False
        self._say("keepalive: no answer to a ping, re-opening the link")
        self.fault()

    # ---- the downlink -----------------------------------------------------------------
    def _ended(self):
        # The server ended a subscription (2.02, an error code): again after a back-off.
        self._reg_fails += 1
        self._reg_at = time.ticks_add(time.ticks_ms(), backoff(self._reg_fails, 1000))
        self.wake()

    def _register(self, now, heard):
        at = self._reg_at
        if at is not None and time.ticks_diff(now, at) < 0:
            if not (self._unheard and heard is not None and time.ticks_diff(heard, self._reg_t0) > 0):
                return
        r = self.link.keep_downlink(self._renew)
        if r is not None:
            self._renew = False
            self._reg_t0 = now
            self._reg = asyncio.create_task(self._registering(r))

    async def _registering(self, r):
        # A task of its own while it lasts: a registration may wait long for its answer, and
        # the supervisor's task must go on feeding the watchdog meanwhile.
        try:
            code = await r
        except OSError as e:
            code = -1
            self.fault(e)
        self._reg = None
        self._unheard = code == -1
        if code == 0:
            self._reg_fails = 0
            self.refusing = False
            self._reg_at = None
            return
        if code == 129:  # 4.01: the credentials are refused, which will not mend soon
            self._reg_fails = _REFUSED
            self.refused("subscriptions: 4.01")
        else:
            self._reg_fails += 1
        self._reg_at = time.ticks_add(time.ticks_ms(), backoff(self._reg_fails, 1000))

    def accepted(self):
        """The server took the credentials (an uplink succeeded): after a refusal, register
        the downlink now instead of at the end of the longest back-off."""
        if self.refusing:
            self.refusing = False
            self._reg_fails = 0
            self._reg_at = None
            self.wake()

    def refused(self, what):
        """Say once, until the server takes the credentials again (refusing = False), that it
        refuses them (4.01, HTTP 401): not a fault of the data, nor of the link."""
        if self.refusing:
            return
        self.refusing = True
        link = self.link
        if link.token is None and link.basic:
            why = ("the server does not accept the MQTT_BASIC credentials: the client id / user name / password"
                   " of `mqtt` (fix them on the device or in ThingsBoard)")
        elif link.token is None:
            why = "the server does not accept the device's X.509 certificate (bound to no device?)"
        else:
            why = "the server does not accept the access token in `token` (fix it on the device or in ThingsBoard)"
        self._say("credentials refused (%s): %s; retrying at the longest back-off" % (what, why))

    # ---- sleeping ---------------------------------------------------------------------
    async def _sleep(self, ms):
        # In slices, so the board's watchdog is fed meanwhile.
        while ms > 0:
            self._tick()
            await asyncio.sleep_ms(min(ms, _TICK_MS))
            ms -= _TICK_MS

    async def _nap(self, ms):
        # A sleep that wake() ends early (by cancelling it: the task's only use of cancel).
        self._napping = True
        try:
            await asyncio.sleep_ms(ms)
        except asyncio.CancelledError:
            if self._task is None:  # stop()
                raise
        self._napping = False


def _text(e, link):
    # A link fault in words. A refused connection (a TCP RST, or over UDP the ICMP port
    # unreachable that answers a datagram to a port nothing serves) names the address: a wrong
    # `port`, or the server is down. Others as their type and text ("OSError: [Errno 113] EHOSTUNREACH").
    if e.args == (_ECONNREFUSED,):
        return "nothing answers at %s:%s (connection refused): is `port` right, and the server up?" % (
            link.host, link.port)
    return "%s: %s" % (type(e).__name__, e)


def _unresolved(e):
    # getaddrinfo's failure: the unix port raises OSError("[addrinfo error -2]"), lwIP ports
    # (Pico W, ESP32) and CPython's gaierror a negative number; socket errors are positive.
    a = e.args[0] if e.args else None
    return (type(a) is str and a.startswith("[addrinfo")) or (type(a) is int and a < 0)
