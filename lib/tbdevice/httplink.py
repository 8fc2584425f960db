# The ThingsBoard device API over HTTP(S) (spec §15): the same link (tbdevice/link.py) as
# CoapLink, so Device, the Downlink and the app do not change with the transport. Uplink requests
# share one kept-alive connection; shared-attribute updates and server-side RPC arrive by
# long polling, each poll on its own connection (a waiting poll occupies its socket).
import asyncio

from httpclient.client import Connection, quote, resolve
from httpclient.errors import BadResponse, HttpError
from httpclient.errors import Timeout as HttpTimeout
from tbdevice import errors
from tbdevice.codec import decode_json
from tbdevice.jsonenc import dumps
from tbdevice.link import ATTRIBUTE_UPDATE, ATTRIBUTES_GET, NAMES, PROVISION, RPC_REPLY, RPC_REQUEST, backoff, encoded

_JSON = b"application/json"
_POLL_MS = 20000  # long-poll timeout: under the monolith's ~30 s Spring MVC async limit (spec §15)
_LIMIT = 8192  # largest answer body accepted (attribute sets, RPC requests)


def shared_state(payload):
    """The shared section of an attribute answer, as the flat JSON an update carries."""
    got = decode_json(payload, "attributes") if payload else {}
    return dumps(got.get("shared") or {} if isinstance(got, dict) else {}).encode()


class HttpLink:
    """tls: an ssl.SSLContext for https (httpclient.client.tls_context), None for http.
    timeout_ms bounds each uplink request; poll_ms is the long-poll `timeout`."""

    basic = False  # access token only (tbdevice/link.py)

    def __init__(self, host, port=80, token=None, tls=None, log=None, timeout_ms=20000, poll_ms=_POLL_MS,
                 limit=_LIMIT):
        self.host = host
        self.port = port
        self.tls = tls
        self.log = log
        self.timeout_ms = timeout_ms
        self.poll_ms = poll_ms
        self.limit = limit
        self.token = None
        self.polls = 0
        self.ended = None  # (the Supervisor's hook; the polls re-subscribe themselves)
        self._addr = None
        self._conn = Connection(host, port, tls)
        self._lock = asyncio.Lock()  # one uplink request at a time on its connection
        self._pollconns = []
        self._live = [False, False]
        self._tasks = []
        if token:
            self.set_token(token)

    def _say(self, text):
        if self.log:
            self.log(text)

    codec = None  # set by the Device: what post() encodes telemetry and attributes with
    client = None  # no CoAP client underneath (Device.client)

    def set_token(self, token):
        self.token = token
        self._base = "/api/v1/" + token + "/"
        b = self._base
        # Indexed by operation (coaplink.TELEMETRY, ...); RPC_REPLY and PROVISION per call.
        self._paths = (b + "telemetry", b + "attributes", b + "attributes", b + "rpc", None, b + "claim")

    @property
    def retransmissions(self):
        """Requests sent again because a kept-alive connection had been closed by the server."""
        return self._conn.resent + sum(c.resent for c in self._pollconns)

    async def open(self):
        # A connection that broke before answering (refused, reset, closed at once, TLS
        # refused) is a link fault: the Supervisor backs off before it opens again.
        self._addr = resolve(self.host, self.port)  # DNS once per open (DESIGN §5)
        self._conn.addr = self._addr
        for c in self._pollconns:
            c.addr = self._addr

    async def close(self):
        await self.stop_downlink()
        self._conn.close()

    def drop(self):
        """Forget the uplink socket after a fault; the next request makes a new one."""
        self._conn.close()

    def pause(self):
        return  # nothing runs in the background but the polls, which a caller starts itself

    resume = pause

    def heard(self):
        return None  # no cheap way to ask: the polls are the liveness check (they fail and restart)

    async def probe(self, timeout_ms):
        return True

    def stats(self):
        return {"retransmissions": self.retransmissions, "polls": self.polls}

    async def _call(self, conn, method, path, body, timeout_ms, limit, what):
        try:
            return await conn.request(method, path, body, _JSON if body else None, timeout_ms, limit)
        except HttpTimeout:
            raise errors.Timeout("%s: no response in %d ms" % (what, timeout_ms))
        except BadResponse as e:
            raise errors.BadPayload("%s: %s" % (what, e))

    def post(self, op, body, arg=None):
        """An uplink answered by a status only (as CoapLink.post): here always an awaitable."""
        return self.request(op, encoded(self.codec, op, body, arg), None, None, arg)

    async def request(self, op, body=b"", query=None, timeout_ms=None, rid=None):
        """One operation; returns the answer's body (None for an attribute request that
        found nothing: `{}` over HTTP, spec §15). Error statuses raise TbError subclasses
        with e.code the HTTP status; no answer in time raises errors.Timeout, as over CoAP
        (a client-side RPC the rule chain never answers ends that way)."""
        if op == PROVISION:
            path = "/api/v1/provision"
        elif op == RPC_REPLY:
            path = self._base + "rpc/" + str(rid)
        else:
            path = self._paths[op]
        if query:
            q = "&".join(k + "=" + quote(",".join(v)) for k, v in query if v)
            if q:
                path += "?" + q
        what = NAMES[op]
        method = "GET" if op == ATTRIBUTES_GET else "POST"
        async with self._lock:
            status, payload = await self._call(self._conn, method, path, body, timeout_ms or self.timeout_ms,
                                               self.limit, what)
        if status == 200:
            if op == ATTRIBUTES_GET and bytes(payload).strip() in (b"", b"{}"):
                return None
            return payload
        if op == PROVISION:
            # The server answers 200 with a JSON status even on NOT_FOUND/FAILURE (spec §9);
            # anything else is a request it could not read.
            raise errors.ProvisionError("provision: HTTP %d" % status, "BAD_REQUEST", status)
        if status == 408:  # the server's own timer ran out (a client RPC nobody answered)
            raise errors.Timeout("%s: HTTP 408" % what, status)
        raise errors.for_status(status, what)

    async def fetch_firmware(self, title, version, size, chunk, kind="firmware", timeout_ms=None):
        """Bytes [size*chunk, size*chunk+size) of the assigned package (spec §10.3): empty
        past the end. size must be > 0: the image is never held whole in RAM."""
        if size <= 0:
            raise ValueError("size must be > 0")
        path = "%s%s?title=%s&version=%s&size=%d&chunk=%d" % (self._base, kind, quote(title), quote(version), size,
                                                              chunk)
        async with self._lock:
            status, payload = await self._call(self._conn, "GET", path, None, timeout_ms or self.timeout_ms,
                                               size, kind)
        if status != 200:
            raise errors.for_status(status, kind)
        return payload

    async def download(self, kind, pkg, offset, data, mode="chunk", chunk_size=1024, path="fw", timeout_ms=None):
        """An OTA package from byte `offset` on: chunks of chunk_size from the firmware route
        (spec §10.3; mode and path are CoAP's)."""
        from tbdevice import otafetch

        get = otafetch.http_chunk_getter(self, kind, pkg, chunk_size, timeout_ms)
        await otafetch.chunks(get, pkg.get("size"), chunk_size, offset, data)

    # ---- downlink: long polls (spec §15) -------------------------------------------
    @property
    def subscribed(self):
        return bool(self._tasks) and self._live[0] and self._live[1]

    def start_downlink(self, put, silence_ms=300000):
        """Poll attributes/updates and rpc, each on its own connection; put(kind, payload,
        initial) queues what arrives. HTTP sends no initial state, so all shared attributes
        are read once when polling starts and after each failure, as initial=True. The
        polls keep themselves going (and the link alive): keep_downlink has nothing to do."""
        if self._tasks:
            return
        self._pollconns = [Connection(self.host, self.port, self.tls, self._addr) for _ in range(2)]
        self._tasks = [asyncio.create_task(self._poll(0, put)), asyncio.create_task(self._poll(1, put))]

    def keep_downlink(self, renew=False):
        return None

    async def stop_downlink(self):
        for t in self._tasks:
            t.cancel()
        self._tasks = []
        for c in self._pollconns:
            c.close()
        self._live = [False, False]

    async def _poll(self, which, put):
        conn = self._pollconns[which]
        attrs = which == 0
        path = self._base + ("attributes/updates" if attrs else "rpc") + "?timeout=" + str(self.poll_ms)
        what = "attribute updates" if attrs else "rpc"
        kind = ATTRIBUTE_UPDATE if attrs else RPC_REQUEST
        need_state = attrs
        fails = 0
        while True:
            try:
                if need_state:
                    st, body = await conn.request("GET", self._base + "attributes", None, None, self.timeout_ms,
                                                  self.limit)
                    if st != 200:
                        raise errors.for_status(st, "attribute request")
                    put(ATTRIBUTE_UPDATE, shared_state(body), True)
                    need_state = False
                self._live[which] = True
                self.polls += 1
                # The server holds the poll up to poll_ms; allow it the uplink time on top.
                st, body = await conn.request("GET", path, None, None, self.poll_ms + self.timeout_ms, self.limit)
                if st == 200:
                    if body:
                        put(kind, body, False)
                elif st != 408:  # 408: nothing yet, poll again (spec §15)
                    raise errors.for_status(st, what)
                fails = 0
            except (OSError, HttpError, errors.TbError, ValueError) as e:
                # Down, refused, stalled, an error status or a bad answer: wait, then start
                # again on a new connection (with a fresh attribute state: updates made while
                # no poll was waiting are not queued by the server).
                self._live[which] = False
                conn.close()
                need_state = attrs
                # Refused credentials will not mend soon: the longest wait at once.
                fails = 16 if isinstance(e, errors.Unauthorized) else fails + 1
                d = backoff(fails)
                self._say("%s poll: %s: %s, polling again in %d ms" % (what, type(e).__name__, e, d))
                if self._addr is None or fails > 3:
                    try:
                        self._addr = conn.addr = resolve(self.host, self.port)
                    except OSError:
                        pass
                await asyncio.sleep_ms(d)
