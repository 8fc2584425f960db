"""What ThingsBoard's core and device actor do for tbsim: attribute pushes, device removal (spec §6.2, §6.4)."""

from . import jsontypes, protomode
from .observe import ATTRIBUTES

CLIENT_SCOPE = "CLIENT_SCOPE"
SHARED_SCOPE = "SHARED_SCOPE"
SERVER_SCOPE = "SERVER_SCOPE"
SCOPES = (CLIENT_SCOPE, SHARED_SCOPE, SERVER_SCOPE)


def flat_json(rows):
    """Attribute rows -> Gson-style flat JSON object text (spec §5 'Output JSON')."""
    return jsontypes.dumps({r["key"]: jsontypes.to_python(r["vtype"], r["v"]) for r in rows})


class Core:
    def __init__(self, store, observe, rpc, log):
        self.store = store
        self.observe = observe
        self.rpc = rpc
        self.log = log
        self.http_waiters = {}  # device_id -> [Future] of HTTP attributes/updates long polls (spec §15)
        self.power = None       # power.PowerSaving: PSM/eDRX devices get downlinks only when awake (spec §13)
        self.mqtt = None        # mqttserver.MqttServer: devices connected over MQTT

    def uplink(self, device_id):
        """A request to api/v1/... or an ACK of a CON notification: the device is awake (spec §13)."""
        if self.power is not None:
            self.power.uplink(device_id)

    def save_attributes(self, device_id, scope, kvs):
        """Save attributes; SHARED changes are pushed to a subscribed device (DeviceActorMessageProcessor)."""
        self.store.save_attributes(device_id, scope, kvs)
        if scope == SHARED_SCOPE and kvs:
            rows = [{"key": k, "vtype": t, "v": v} for k, t, v in kvs]
            self._push(device_id, flat_json(rows).encode(), rows=rows)

    def delete_attributes(self, device_id, scope, keys):
        deleted = self.store.delete_attributes(device_id, scope, keys)
        if scope == SHARED_SCOPE and deleted:
            self._push(device_id, jsontypes.dumps({"deleted": deleted}).encode(), deleted=deleted)
        return deleted

    def _push(self, device_id, payload, rows=(), deleted=()):
        for fut in self.http_waiters.pop(device_id, []):
            if not fut.done():
                fut.set_result(payload)
        if self.mqtt is not None:
            self.mqtt.push_attributes(device_id, payload)
        rel = self.observe.get(device_id, ATTRIBUTES)
        if rel is None:
            return
        if self.power is not None and not self.power.allowed(device_id):
            # Outside the downlink window: queued and merged, sent at the next uplink (spec §13).
            updates = {r["key"]: jsontypes.to_python(r["vtype"], r["v"]) for r in rows}
            self.power.queue_attributes(device_id, updates, deleted)
            self.log.coap(rel.peer, "CON" if rel.con else "NON", "NOTIFY", "attributes", rel.device_name, payload,
                          "queued: device asleep (power saving)")
            return
        self.notify_attributes(device_id, payload)

    def notify_attributes(self, device_id, payload):
        rel = self.observe.get(device_id, ATTRIBUTES)
        if rel is None:
            return
        if rel.proto is not None:  # AttributeUpdateNotificationMsg (spec §11.2)
            payload = protomode.attribute_update(payload)
        how = self.observe.notify(rel, payload)
        self.log.coap(rel.peer, "CON" if rel.con else "NON", "NOTIFY", "attributes", rel.device_name, payload,
                      "2.05 Observe=%d %s" % (rel.counter - 1, how))

    def delete_device(self, device_id):
        # CoapSessionListener.onDeviceDeleted: subscriptions end with 2.02 Deleted (spec §6.4).
        self.observe.cancel_device(device_id)
        if self.mqtt is not None:
            self.mqtt.close_device(device_id, "device deleted")
        return self.store.delete_device(device_id)
