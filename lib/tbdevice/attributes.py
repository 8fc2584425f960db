# The device's copy of its shared attributes (spec §6.2): replaced by the full state that
# opens each subscription, patched by each notification ({"k": v} and {"deleted": [..]}).
# Callbacks fire for what actually changed, so a re-subscription after a gap reports
# exactly the changes that were missed.


# Keys kept in the device's copy: the server's notifications are each bounded (codec.MAX_BYTES)
# but new keys could pile up without end. A key beyond the bound is reported to the callbacks
# and not kept (counted in `overflow`). A class attribute: raise it for a bigger device.


class SharedAttributes:
    MAX_KEYS = 64

    def __init__(self):
        self.values = {}
        self.overflow = 0
        self._by_key = {}
        self._any = []

    def on(self, key, cb):
        """cb(value) when key changes; value None when it is deleted."""
        self._by_key.setdefault(key, []).append(cb)

    def on_any(self, cb):
        """cb(changed: dict, deleted: list) after each update that changed something."""
        self._any.append(cb)

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
        for k, v in changed.items():
            for cb in self._by_key.get(k, ()):
                cb(v)
        for k in deleted:
            for cb in self._by_key.get(k, ()):
                cb(None)
        for cb in self._any:
            cb(changed, deleted)
