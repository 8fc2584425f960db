# The device's copy of its shared attributes (spec §6.2): replaced by the full state that
# opens each subscription, patched by each notification ({"k": v} and {"deleted": [..]}).
# Callbacks fire for what actually changed, so a re-subscription after a gap reports
# exactly the changes that were missed. A callback that raises is the application's fault:
# it is reported (failed()) and the other callbacks still run; the copy is already updated.


# Keys kept in the device's copy: the server's notifications are each bounded (codec.MAX_BYTES)
# but new keys could pile up without end. A key beyond the bound is reported to the callbacks
# and not kept (counted in `overflow`). A class attribute: raise it for a bigger device.


class SharedAttributes:
    MAX_KEYS = 64

    def __init__(self, report=None):
        """report(key, e): a callback raised e (key None: an on_any callback)."""
        self.values = {}
        self.overflow = 0
        self.failures = 0  # callbacks that raised
        self.report = report
        self.pending = []  # (key, coroutine) returned by async callbacks, for the caller to await
        self._by_key = {}
        self._any = []

    def on(self, key, cb):
        """cb(value) when key changes; value None when it is deleted. Plain or async: the
        coroutine of an async one goes to `pending`, which the Downlink awaits in order."""
        self._by_key.setdefault(key, []).append(cb)

    def on_any(self, cb):
        """cb(changed: dict, deleted: list) after each update that changed something."""
        self._any.append(cb)

    def failed(self, key, e):
        self.failures += 1
        if self.report is not None:
            self.report(key, e)

    def replace(self, state):
        """The full state (first response of a subscription); returns (changed, deleted)."""
        changed = {k: v for k, v in state.items() if k not in self.values or self.values[k] != v}
        deleted = [k for k in self.values if k not in state]
        self.values = {}
        for k, v in state.items():
            self._keep(k, v)
        self._notify(changed, deleted)
        return changed, deleted

    def apply(self, delta):
        """A notification: changed keys, and/or {"deleted": [keys]}; returns (changed, deleted)."""
        deleted = [k for k in (delta.get("deleted") or ()) if k in self.values]
        for k in deleted:
            del self.values[k]
        changed = {}
        for k, v in delta.items():
            if k == "deleted" and isinstance(v, list):
                continue
            if self.values.get(k, changed) != v:
                changed[k] = v
            self._keep(k, v)
        self._notify(changed, deleted)
        return changed, deleted

    def _keep(self, k, v):
        if k in self.values or len(self.values) < self.MAX_KEYS:
            self.values[k] = v
        else:
            self.overflow += 1

    def _notify(self, changed, deleted):
        if not changed and not deleted:
            return
        by_key = self._by_key
        if by_key:
            for k, v in changed.items():
                for cb in by_key.get(k, ()):
                    self._call(k, cb, v)
            for k in deleted:
                for cb in by_key.get(k, ()):
                    self._call(k, cb, None)
        for cb in self._any:
            try:
                r = cb(changed, deleted)
                if r is not None and hasattr(r, "send"):  # an async callback's coroutine
                    self.pending.append((None, r))
            except Exception as e:  # the application's fault: reported, the others still run
                self.failed(None, e)

    def _call(self, k, cb, v):
        try:
            r = cb(v)
            if r is not None and hasattr(r, "send"):
                self.pending.append((k, r))
        except Exception as e:  # as above
            self.failed(k, e)
