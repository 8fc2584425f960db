"""Power-saving modes of COAP devices (spec §13; DefaultCoapClientContext, TbCoapClientState).

- Settings: the device's own transport configuration (`deviceData.transportConfiguration`, type COAP, with
  powerMode/psmActivityTimer/edrxCycle/pagingTransmissionWindow) wins over its profile's
  `profileData.transportConfiguration.clientSettings`. A timer that is null or 0 falls back to 10000 ms (yml).
- Every request to api/v1/... and every ACK of a CON notification is an uplink (`awake`).
- null or DRX: downlinks always allowed. PSM: only within psmActivityTimer after the last uplink. E_DRX: within
  pagingTransmissionWindow, then exactly one downlink per uplink (checkFirstDownlink); edrxCycle is not used.
- A sleep timer marks the client asleep when the window runs out. Attribute updates not allowed are queued and
  merged; RPCs not allowed are not sent. At the next uplink of a sleeping client the merged update goes out as one
  notification and pending RPCs are sent again (sendMsgsAfterSleeping, SendPendingRPCMsg).
"""

import asyncio
import json
import time

from . import jsontypes

PSM, E_DRX, DRX = "PSM", "E_DRX", "DRX"
MODES = (PSM, E_DRX, DRX)
DEFAULT_TIMER_MS = 10000  # transport.coap.psm_activity_timer / paging_transmission_window
_TIMERS = ("psmActivityTimer", "edrxCycle", "pagingTransmissionWindow")


class BadConfiguration(ValueError):
    pass


def _settings(src, where):
    if not isinstance(src, dict):
        raise BadConfiguration("%s must be an object" % where)
    mode = src.get("powerMode")
    if mode is not None and mode not in MODES:
        raise BadConfiguration("%s.powerMode must be one of %s" % (where, ", ".join(MODES)))
    out = {"powerMode": mode}
    for k in _TIMERS:
        v = src.get(k)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise BadConfiguration("%s.%s must be a non-negative integer (ms)" % (where, k))
        out[k] = v
    return out


def profile_transport(cfg):
    """profileData.transportConfiguration from REST -> the stored form (None for DEFAULT)."""
    if cfg is None or cfg.get("type", "DEFAULT") == "DEFAULT":
        return None
    if cfg.get("type") == "MQTT":  # an MQTT profile: its payload type (mqttapi, spec thingsboard-mqtt.md §12)
        from .mqttapi import profile_transport as mqtt_profile_transport

        return mqtt_profile_transport(cfg)
    if cfg.get("type") != "COAP":
        raise BadConfiguration("transportConfiguration.type must be DEFAULT, COAP or MQTT")
    out = {"type": "COAP", "clientSettings": _settings(cfg.get("clientSettings") or {}, "clientSettings"),
           "coapDeviceTypeConfiguration": cfg.get("coapDeviceTypeConfiguration") or {
               "coapDeviceType": "DEFAULT",
               "transportPayloadTypeConfiguration": {"transportPayloadType": "JSON"}}}
    return out


def device_transport(cfg):
    """deviceData.transportConfiguration from REST -> the stored form (None for DEFAULT)."""
    if cfg is None or cfg.get("type", "DEFAULT") == "DEFAULT":
        return None
    if cfg.get("type") != "COAP":
        raise BadConfiguration("transportConfiguration.type must be DEFAULT or COAP")
    return dict(_settings(cfg, "transportConfiguration"), type="COAP")


def effective(profile_cfg, device_cfg):
    """(mode, window_ms): the device's settings win, then the profile's clientSettings (spec §13)."""
    dev = device_cfg or {}
    prof = (profile_cfg or {}).get("clientSettings") or {}
    mode = dev.get("powerMode") or prof.get("powerMode")
    if mode is None or mode == DRX:
        return None, 0
    key = "psmActivityTimer" if mode == PSM else "pagingTransmissionWindow"
    window = dev.get(key) or prof.get(key) or DEFAULT_TIMER_MS
    return mode, window


class _Client:
    def __init__(self):
        self.last_uplink = None
        self.asleep = False
        self.first_edrx = True
        self.sleep_timer = None
        self.updates = {}     # key -> python value, merged (TbCoapClientState.addQueuedNotification)
        self.deleted = []
        self.held_rpc = False


class PowerSaving:
    """on_wake(device_id, payload_or_None) is called after the uplink that wakes a client."""

    def __init__(self, store, log):
        self.store = store
        self.log = log
        self.clients = {}
        self.on_wake = None

    def settings(self, device_id):
        d = self.store.device(device_id)
        if d is None:
            return None, 0
        p = self.store.profile(d["profile_id"])
        load = lambda text: json.loads(text) if text else None
        return effective(load(p["transport_config"]) if p else None, load(d["transport_config"]))

    def _client(self, device_id):
        c = self.clients.get(device_id)
        if c is None:
            c = self.clients[device_id] = _Client()
        return c

    def uplink(self, device_id):
        mode, window = self.settings(device_id)
        if mode is None:
            return
        c = self._client(device_id)
        c.last_uplink = time.monotonic()
        c.first_edrx = True
        loop = asyncio.get_running_loop()
        if c.sleep_timer is not None:
            c.sleep_timer.cancel()
        c.sleep_timer = loop.call_later(window / 1000.0, self._fall_asleep, device_id, mode)
        if c.asleep or c.updates or c.deleted or c.held_rpc:
            c.asleep = False
            # After the request has been answered: the merged update, then the pending RPCs.
            loop.call_soon(self._wake, device_id)

    def _fall_asleep(self, device_id, mode):
        c = self._client(device_id)
        c.sleep_timer = None
        c.asleep = True
        self.log.line("power %s: device %s asleep" % (mode, device_id[:8]))

    def _wake(self, device_id):
        c = self._client(device_id)
        payload = None
        if c.updates or c.deleted:
            merged = dict(c.updates)
            if c.deleted:
                merged["deleted"] = list(c.deleted)
            payload = jsontypes.dumps(merged).encode()
        c.updates, c.deleted, c.held_rpc = {}, [], False
        if self.on_wake is not None:
            self.on_wake(device_id, payload)

    def allowed(self, device_id):
        """isDownlinkAllowed (spec §13)."""
        mode, window = self.settings(device_id)
        if mode is None:
            return True
        c = self._client(device_id)
        if c.last_uplink is None:
            return False  # never heard from since start: asleep as far as the server knows
        if (time.monotonic() - c.last_uplink) * 1000.0 <= window:
            return True
        if mode == E_DRX and c.first_edrx:
            c.first_edrx = False  # checkFirstDownlink: one downlink per uplink after the window
            return True
        return False

    def queue_attributes(self, device_id, updates, deleted):
        c = self._client(device_id)
        for k, v in updates.items():
            c.updates[k] = v
            if k in c.deleted:
                c.deleted.remove(k)
        for k in deleted:
            c.updates.pop(k, None)
            if k not in c.deleted:
                c.deleted.append(k)

    def hold_rpc(self, device_id):
        self._client(device_id).held_rpc = True
