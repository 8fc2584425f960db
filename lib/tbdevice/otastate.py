# OTA bookkeeping without I/O beyond one small JSON file per package kind: which package the
# server assigned (shared attributes fw_* / sw_*, spec §10.1), whether it differs from the
# running one, and the record that survives a reboot (download offset, the applied
# package awaiting its health check, the last package that failed).
import json
import os
import sys

KINDS = ("fw", "sw")
# OtaPackageUpdateStatus values a device reports (spec §10.1).
DOWNLOADING = "DOWNLOADING"
DOWNLOADED = "DOWNLOADED"
VERIFIED = "VERIFIED"
UPDATING = "UPDATING"
UPDATED = "UPDATED"
FAILED = "FAILED"

_FIELDS = ("title", "version", "tag", "url", "size", "checksum_algorithm", "checksum")


class OtaError(Exception):
    """A failure that will not mend by retrying: reported as FAILED with fw_error = str(e)."""


def free():
    """The free heap once collected: what an update can count on (said when it runs out)."""
    import gc

    gc.collect()
    return gc.mem_free()


def unload(*names):
    """Let the heap have back the tbdevice modules `names` (e.g. "bundle") once a step of an
    update is over: a later step imports them again. Their heap comes back only when nothing
    holds their functions or classes any more, so only modules that no longer running code
    refers to are named; otastate itself, whose OtaError the other modules raise, stays."""
    pkg = sys.modules["tbdevice"]
    for n in names:
        if sys.modules.pop("tbdevice." + n, None) is not None and n in pkg.__dict__:
            delattr(pkg, n)  # `from tbdevice import n` set it on the package too


def keys(kind):
    """The shared attribute names of a package kind: fw_title, fw_version, ..."""
    return [kind + "_" + f for f in _FIELDS]


def target(shared, kind):
    """The package described by the shared attributes, or None when none is assigned."""
    p = {}
    for f in _FIELDS:
        v = shared.get(kind + "_" + f)
        if f == "size":
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                p[f] = v
        elif isinstance(v, str) and v:
            p[f] = v
    if "title" not in p or "version" not in p:
        return None
    return p


def same(a, b):
    """The same package: title, version and, when both know it, checksum."""
    if not a or not b:
        return False
    if a.get("title") != b.get("title") or a.get("version") != b.get("version"):
        return False
    ca, cb = a.get("checksum"), b.get("checksum")
    return ca is None or cb is None or ca.lower() == cb.lower()


def running_is(pkg, title, version):
    return pkg is not None and pkg.get("title") == title and pkg.get("version") == version


def progress_step(offset, size, last, step=10):
    """The percentage to report now, or None: every `step` percent and at 100."""
    if not size:
        return None
    pct = min(100, offset * 100 // size)
    if last is None or pct >= last + step or (pct == 100 and last != 100):
        return pct
    return None


class Record:
    """state_dir/ota/<kind>.json: {"pkg", "stage": "download"|"applying", "offset"}, and
    "failed": the package that failed last (not tried again until the assignment changes)."""

    def __init__(self, state_dir, kind):
        self.dir = state_dir + "/ota"
        self.path = self.dir + "/" + kind + ".json"
        self.data = {}
        try:
            with open(self.path) as f:
                d = json.load(f)
            if isinstance(d, dict):
                self.data = d
        except (OSError, ValueError):
            pass

    def get(self, key, default=None):
        return self.data.get(key, default)

    def set(self, **kw):
        for k, v in kw.items():
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v
        self.save()

    def save(self):
        try:
            os.mkdir(self.dir)
        except OSError:
            pass
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(self.data))
        try:
            os.rename(tmp, self.path)  # atomic: a kill leaves the old or the new record
        except OSError:
            os.remove(self.path)
            os.rename(tmp, self.path)
