# OTA updates of firmware (fw_) and software (sw_) packages (spec §10, issue 4): follows the
# package the server assigns through the shared attributes (read once at start, then the
# subscription), and when it differs from the running one: download (tbdevice.otafetch,
# resumable from the offset in state_dir), verify (tbdevice.checksum, computed while
# writing), apply (a board sink: tbdevice.otasink, tbdevice.otapart), reboot, and after the
# new image's health check (it connected and posted) confirm it and report UPDATED (the
# boot's part: tbdevice.otaboot.Trial, which Ota builds on).
# Reports telemetry <kind>_state = DOWNLOADING (with <kind>_progress, percent), DOWNLOADED,
# VERIFIED, UPDATING, UPDATED, or FAILED with <kind>_error saying why; the running image
# stays whenever something fails. A package unassigned mid-way ({"deleted": [..]}) cancels.
import asyncio
import random

from tbdevice import otastate as st
from tbdevice.errors import TbError
from tbdevice.otaboot import Trial

_ENOSPC = 28
_SAVE_EVERY = 16384  # bytes between progress records (flash wear vs. work redone on resume)


class Ota(Trial):
    """Trial's arguments (tbdevice.otaboot), and: url_ssl: how an https package URL (fw_url)
    verifies its server: an ssl.SSLContext, or a function that makes one when the first such
    URL comes (it may raise OtaError saying why it cannot); None fails those packages.
    no_heap(kind): what a download that runs out of heap does instead of failing (the app
    moves it to a boot of its own, firmware/otaapp.py); it goes on from the recorded offset."""

    def __init__(self, device, sinks, running, state_dir, report, reset, mode="chunk", chunk_size=1024,
                 path="fw", timeout_ms=10000, retry_ms=5000, stalls=5, health_timeout_ms=120000, url_ssl=None,
                 settle_ms=500, log=None, no_heap=None):
        Trial.__init__(self, sinks, running, state_dir, report, reset, health_timeout_ms, log)
        self.no_heap = no_heap
        self.device = device
        self.mode = mode
        self.chunk_size = min(1024, chunk_size)
        self.path = path
        self.timeout_ms = timeout_ms
        self.retry_ms = retry_ms
        self.stalls = stalls
        self.url_ssl = url_ssl
        self.settle_ms = settle_ms
        self._settle_task = None
        self._shared = {}
        self._again = False
        self.jobs = {}  # kind -> (pkg, task)

    async def start(self, follow=True):
        """After connect and subscribe: settle what the last boot left, then read the
        assignment once (an update assigned while the device was off is found). follow:
        take the attribute changes from the device; False when the caller hands them to
        consider() (firmware/otaapp.py, which drops this object once it is idle())."""
        await self.settle()
        if follow:
            self.device.on_attributes(self._on_change)
        try:
            got = await self.device.request_attributes(shared_keys=st.keys("fw") + st.keys("sw"))
            self.consider(got.get("shared") or {})
        except (TbError, ValueError) as e:
            self._say("reading the assignment: %r (the subscription will bring it)" % e)

    def busy(self):
        return bool(self.jobs or self.pending or self._settle_task is not None)

    # ---- assignment ----------------------------------------------------------------
    def _on_change(self, changed, deleted):
        self.consider(self.device.shared)

    def consider(self, shared):
        """Act on the assignment in `shared` once it has settled: ThingsBoard saves the new
        attributes and deletes the stale ones (a URL package's fw_size) in separate updates."""
        self._shared = shared
        self._again = True
        if self._settle_task is None:
            self._settle_task = asyncio.create_task(self._settle())

    async def _settle(self):
        while self._again:
            self._again = False
            await asyncio.sleep_ms(self.settle_ms)
        self._settle_task = None
        self.decide(self._shared)
        self.done.set()

    def decide(self, shared):
        """Start, keep or cancel the job of each kind for the assignment in `shared`."""
        for kind in st.KINDS:
            if kind not in self.sinks or kind in self.pending:
                continue
            pkg = st.target(shared, kind)
            job = self.jobs.get(kind)
            if job is not None:
                if job[0] == pkg:
                    continue
                job[1].cancel()
                del self.jobs[kind]
                self._sink(kind).discard()
                st.Record(self.state_dir, kind).set(stage=None, pkg=None, offset=None)
                if st.same(job[0], pkg):
                    self._say("%s: the package's attributes changed; starting again" % kind)
                else:
                    why = "cancelled: the package was unassigned" if pkg is None else "cancelled: another package"
                    self._say("%s %s" % (kind, why))
                    asyncio.create_task(self._fail(kind, why))
            if pkg is None:
                continue
            r = self.running.get(kind)
            if r and st.running_is(pkg, r[0], r[1]):
                continue
            rec = st.Record(self.state_dir, kind)
            if rec.get("failed") == pkg:
                # failed before: not again until the assignment changes (said at each look)
                self._say("%s %s %s failed before; waiting for another assignment" % (kind, pkg["title"],
                                                                                     pkg["version"]))
                continue
            self.jobs[kind] = (pkg, asyncio.create_task(self._job(kind, pkg)))

    # ---- one update ----------------------------------------------------------------
    async def _job(self, kind, pkg):
        rec = st.Record(self.state_dir, kind)
        try:
            await self._update(kind, pkg, rec)
        except asyncio.CancelledError:
            self._sink(kind).close()
            raise
        except st.OtaError as e:
            self._end(kind, rec, pkg)
            await self._fail(kind, str(e))
        except OSError as e:
            self._end(kind, rec, pkg)
            if e.args and e.args[0] == _ENOSPC:
                await self._fail(kind, "no space left on the device (%s)" % (e.args[1] if len(e.args) > 1 else "ENOSPC"))
            else:
                await self._fail(kind, "storage error: %r" % e)
        except MemoryError:
            if self.no_heap is not None and rec.get("stage") == "download":
                try:
                    self._sink(kind).close()
                except (OSError, MemoryError):
                    pass
                return await self.no_heap(kind)
            # Not enough heap for this update on this board: say so rather than end the task
            # silently with the package stuck in DOWNLOADING.
            self._end(kind, rec, pkg)
            await self._fail(kind, "out of memory (%d bytes free)" % st.free())

    def _end(self, kind, rec, pkg):
        try:
            self._sink(kind).discard()
        except OSError:
            pass
        rec.set(stage=None, pkg=None, offset=None, failed=pkg)
        self.jobs.pop(kind, None)

    def _checksum(self, kind, pkg):
        """The running checksum to verify the package with, or None (a URL package without
        one); raises OtaError, before anything is downloaded, when it cannot be verified."""
        from tbdevice import checksum  # here, not at the top: a boot that only confirms never needs it

        alg = pkg.get("checksum_algorithm")
        want = pkg.get("checksum")
        if not (alg and want):
            if pkg.get("url"):
                return None  # a URL package may come without a checksum (spec §10.1)
            # ThingsBoard sends both for every package it stores: one missing (or empty) is
            # not a package whose bytes can be trusted.
            raise st.OtaError("%s_checksum%s is missing: the package's integrity cannot be known" % (
                kind, "" if alg else " (and %s_checksum_algorithm)" % kind))
        why = checksum.malformed(alg, want)
        if why is None:
            try:
                return checksum.new(alg)
            except ValueError as e:  # an algorithm this port cannot compute
                why = str(e)
            finally:
                st.unload("checksum")  # until the verify: the download needs only the object it made
        raise st.OtaError("%s_checksum: %s: the package's integrity cannot be known" % (kind, why))

    def _tls(self, url):
        """The TLS context for an https URL, or None for http; OtaError when there is none."""
        if not url.startswith("https:"):
            return None
        u = self.url_ssl
        if u is None:
            raise st.OtaError("an https package URL and no CA to verify its server with")
        if callable(u):
            u = self.url_ssl = u()  # made once, for every later download
        return u

    async def _update(self, kind, pkg, rec):
        await self._download(kind, pkg, rec)  # what it held (checksum, job) goes with its frame
        await self._report({kind + "_state": st.UPDATING})
        rec.set(stage="applying", offset=None)
        sink = self._sink(kind)
        what = sink.apply(pkg)  # a sink may say what it applied, and where
        self.jobs.pop(kind, None)
        if sink.needs_reboot:
            self._say("%s %s %s applied%s; rebooting" % (kind, pkg["title"], pkg["version"], ": " + what if what else ""))
            await asyncio.sleep_ms(200)
            self.reset()
            return
        # Nothing to reboot (a data package): this running, posting image is the health check.
        self.running[kind] = (pkg["title"], pkg["version"])
        rec.set(stage=None, pkg=None)
        await self._report({kind + "_state": st.UPDATED, "current_%s_title" % kind: pkg["title"],
                            "current_%s_version" % kind: pkg["version"]})
        self.done.set()

    async def _download(self, kind, pkg, rec):
        """Download and verify: DOWNLOADING .. DOWNLOADED, VERIFIED (raises what fails)."""
        h = self._checksum(kind, pkg)
        if pkg.get("url"):
            self._tls(pkg["url"])  # before anything is downloaded
        alg = pkg.get("checksum_algorithm")
        want = pkg.get("checksum")
        sink = self._sink(kind)
        offset = rec.get("offset", 0) if rec.get("pkg") == pkg and rec.get("stage") == "download" else 0
        size = pkg.get("size")
        job = _Job(self, kind, sink, rec, h, size)
        job.offset = job.saved = offset = sink.open(pkg, offset)
        rec.set(pkg=pkg, stage="download", offset=offset, failed=None)
        if offset:
            self._say("%s %s resuming at byte %d" % (kind, pkg["version"], offset))
            if h is not None:
                sink.replay(offset, h.update)  # the checksum of what is already on flash
        await job.progress(force=True)
        stalls = 0
        while True:
            before = job.offset
            try:
                await self._fetch(kind, pkg, job)
                break
            except TbError as e:
                err = e
            except OSError as e:
                if e.args and e.args[0] == _ENOSPC:
                    raise
                err = e
                await self.device.reconnect()
            # The sink stays open and the checksum goes on: the next try continues at job.offset.
            stalls = 0 if job.offset > before else stalls + 1
            if stalls >= self.stalls:
                raise st.OtaError("download stalled at byte %d: %s" % (job.offset, err))
            self._say("%s at byte %d: %r; retrying" % (kind, job.offset, err))
            await asyncio.sleep_ms(self.retry_ms // 2 + random.getrandbits(16) % (self.retry_ms // 2 + 1))
        sink.close()
        st.unload("coapota", "otablock2", "otafetch", "otaurl")  # the download's code: not needed again
        if size is not None and job.offset != size:
            raise st.OtaError("size mismatch: %d bytes received, fw_size says %d" % (job.offset, size))
        await job.progress(force=True)
        await self._report({kind + "_state": st.DOWNLOADED})
        if h is not None:
            from tbdevice import checksum

            got = checksum.hexdigest(h)
            if not checksum.matches(want, got):
                raise st.OtaError("checksum mismatch (%s): expected %s, got %s" % (alg, want, got))
        else:
            self._say("%s: a URL package without a checksum: nothing to verify against" % kind)
        st.unload("checksum", "softhash")
        await self._report({kind + "_state": st.VERIFIED})

    async def _fetch(self, kind, pkg, job):
        from tbdevice import otafetch  # loaded with the first download, not to confirm an image

        dev = self.device
        url = pkg.get("url")
        if url:
            from tbdevice import otaurl

            await otaurl.fetch(url, job.offset, job.data, self.timeout_ms, self._tls(url))
            return
        # Chunks (both links) or Block2 (CoAP), as the link does it (tbdevice/link.py).
        await dev.link.download(kind, pkg, job.offset, job.data, self.mode, self.chunk_size, self.path,
                                self.timeout_ms)


class _Job:
    # The running download: feeds the sink and the checksum, saves the offset now and then,
    # reports progress every 10 %.
    def __init__(self, ota, kind, sink, rec, h, size):
        self.ota = ota
        self.kind = kind
        self.sink = sink
        self.rec = rec
        self.h = h
        self.size = size
        self.offset = 0
        self.saved = 0
        self.opened = False
        self.pct = None

    async def data(self, mv):
        if self.size is not None and self.offset + len(mv) > self.size:
            raise st.OtaError("size mismatch: more than fw_size %d bytes" % self.size)
        self.sink.write(mv)
        if self.h is not None:
            self.h.update(mv)
        self.offset += len(mv)
        if self.offset - self.saved >= _SAVE_EVERY:
            self.saved = self.sink.durable()
            self.rec.set(offset=self.saved)
        await self.progress()

    async def progress(self, force=False):
        pct = st.progress_step(self.offset, self.size, self.pct)
        if pct is None and not (force and self.pct is None):
            return
        self.pct = pct if pct is not None else 0
        k = self.kind
        await self.ota._report({k + "_state": st.DOWNLOADING, k + "_progress": self.pct})
