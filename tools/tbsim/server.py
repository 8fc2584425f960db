"""TbSim: the whole simulator in one object (CoAP device API + REST + SQLite), for __main__ and for tests."""

import asyncio
import errno
import json
import ssl

from aiohttp import web

from . import protomode
from .coapserver import CoapEndpoint, Timing
from .core import Core
from .httpdevice import HttpDeviceApi
from .log import Log
from .observe import ObserveManager
from .power import PowerSaving, profile_transport
from .ota import OtaService
from .rest import RestApi
from .routes import DeviceApi
from .rpc import RpcService
from .store import Conflict, Store


class PortError(OSError):
    """A port tbsim was asked to serve on cannot be had (taken by another server, or not ours to take):
    `what` is coap, http, https or dtls, the server whose port it is, so the caller can name the option
    or variable that moves it."""

    def __init__(self, what, proto, host, port, cause):
        self.what, self.proto, self.host, self.port = what, proto, host, port
        if cause.errno == errno.EADDRINUSE:
            reason = "is in use by another server (a ThingsBoard?)"
        else:
            reason = "cannot be opened (%s)" % (cause.strerror or cause)
        super().__init__(cause.errno, "the %s port %d (%s) on %s %s" % (
            {"coap": "CoAP", "http": "REST", "https": "HTTPS", "dtls": "CoAPS"}[what], port, proto, host, reason))


async def _bind(what, proto, host, port, start):
    try:
        return await start
    except OSError as exc:
        raise PortError(what, proto, host, port, exc) from exc


class TbSim:
    def __init__(self, host="127.0.0.1", coap_port=5683, http_port=8080, db="run/tbsim.sqlite", devices=(),
                 profiles=(), quiet=False, log_stream=None, timing=None, rpc_ack_timeout=10.0,
                 rpc_min_timeout_ms=5000, delay_ms=0, http_request_timeout_ms=60000, power=None, https_port=None,
                 tls_dir="run/tbsim-tls", protobuf_devices=(), protobuf_schemas=None, dtls_port=None, x509_devices=(),
                 mqtt_port=None, mqtts_port=None, mqtt_inactivity_timeout=600.0, client_rpc_timeout_ms=60000,
                 provision_close_ms=60000):
        self.host = host
        self.coap_port = coap_port
        self.http_port = http_port
        self.db = db
        self.devices = list(devices)      # [(name, token)]
        self.profiles = list(profiles)    # [(name, key, secret)]
        self.log = Log(quiet=quiet, stream=log_stream)
        self.timing = timing or Timing()
        self.rpc_ack_timeout = rpc_ack_timeout
        self.rpc_min_timeout_ms = rpc_min_timeout_ms
        self.delay = delay_ms / 1000.0
        self.http_request_timeout_ms = http_request_timeout_ms
        self.power_settings = power       # clientSettings given to the default profile (--power-mode)
        self.https_port = https_port      # None: no HTTPS; 0: any free port
        self.tls_dir = tls_dir            # test CA and server certificate (tls.py), made if missing
        self.tls_paths = None
        self.dtls_port = dtls_port        # None: no coaps; 0: any free port (spec §12)
        self.x509_devices = list(x509_devices)  # [(name, certificate PEM)]: X509_CERTIFICATE credentials
        self.dtls = None
        self.protobuf_devices = list(protobuf_devices)  # [(name, token)] in the device profile "protobuf"
        self.protobuf_schemas = protobuf_schemas or {}   # {role: schema text} of that profile (spec §11)
        self.mqtt_port = mqtt_port        # None: no MQTT; 0: any free port (spec thingsboard-mqtt.md)
        self.mqtts_port = mqtts_port      # MQTT over TLS, X.509 client certificates (None: off)
        self.mqtt_timing = (mqtt_inactivity_timeout, client_rpc_timeout_ms / 1000.0, provision_close_ms / 1000.0)
        self.mqtt = None
        self.store = None
        self.endpoint = None
        self._runner = None

    async def start(self):
        self.store = Store(self.db)
        for name, token in self.devices:
            self.ensure_device(name, token)
        for name, pem in self.x509_devices:
            self.ensure_x509_device(name, pem)
        for name, key, secret in self.profiles:
            self.store.upsert_provision_profile(name, key, secret)
        if self.protobuf_devices:
            profile = protomode.ensure_profile(self.store, "protobuf", self.protobuf_schemas)
            for name, token in self.protobuf_devices:
                self.ensure_device(name, token, profile["id"])
        self.endpoint = CoapEndpoint(self._handle, self.timing, on_event=self._event)
        self.observe = ObserveManager(self.endpoint, self.log)
        self.rpc = RpcService(self.store, self.observe, self.log, ack_timeout=self.rpc_ack_timeout)
        self.core = Core(self.store, self.observe, self.rpc, self.log)
        # Power saving (spec §13): uplinks wake a PSM/eDRX device; downlinks wait for its window.
        self.power = PowerSaving(self.store, self.log)
        self.power.on_wake = self._wake
        self.core.power = self.rpc.power = self.power
        self.observe.on_ack = lambda rel: self.power.uplink(rel.device_id)
        if self.power_settings:
            cfg = profile_transport({"type": "COAP", "clientSettings": self.power_settings})
            self.store.set_transport_config("profiles", self.store.default_profile()["id"], json.dumps(cfg))
        self.ota = OtaService(self.store, self.core, self.log)
        self.api = DeviceApi(self.store, self.core, self.observe, self.rpc, self.log, self.ota, delay=self.delay)
        self.coap_port = await _bind("coap", "UDP", self.host, self.coap_port,
                                     self.endpoint.open(self.host, self.coap_port))
        if self.dtls_port is not None:
            # CoAP over DTLS on its own port, the same endpoint and device API above it (spec §12).
            from .dtls import DtlsServer

            self.dtls = DtlsServer(self.endpoint, self.store, self.log, self.tls_dir)
            self.endpoint.dtls = self.api.dtls = self.dtls
            self.tls_paths = self.dtls.paths
            loop = asyncio.get_running_loop()
            transport, _ = await _bind("dtls", "UDP", self.host, self.dtls_port, loop.create_datagram_endpoint(
                lambda: self.dtls, local_addr=(self.host, self.dtls_port)))
            self.dtls_port = transport.get_extra_info("sockname")[1]
        if self.mqtt_port is not None or self.mqtts_port is not None:
            await self._start_mqtt()
        http_device = HttpDeviceApi(self.store, self.core, self.rpc, self.log, self.ota,
                                    request_timeout_ms=self.http_request_timeout_ms)
        self.rest = RestApi(self.store, self.core, self.rpc, self.log, rpc_min_timeout_ms=self.rpc_min_timeout_ms,
                            device_api=http_device, ota=self.ota)
        self._runner = web.AppRunner(self.rest.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.http_port)
        await _bind("http", "TCP", self.host, self.http_port, site.start())
        self.http_port = site._server.sockets[0].getsockname()[1]
        if self.https_port is not None:
            # The same REST app (device API included) over TLS, with a certificate from the test CA.
            from .tls import server_context

            ctx, self.tls_paths = server_context(self.tls_dir)
            tls_site = web.TCPSite(self._runner, self.host, self.https_port, ssl_context=ctx)
            await _bind("https", "TCP", self.host, self.https_port, tls_site.start())
            self.https_port = tls_site._server.sockets[0].getsockname()[1]
        return self

    async def _start_mqtt(self):
        # The MQTT device API on the same store, core, RPC and OTA services (mqttserver.py, mqttapi.py).
        from .mqttapi import MqttDeviceApi
        from .mqttserver import MqttServer

        inactivity, client_rpc_timeout, provision_close = self.mqtt_timing
        api = MqttDeviceApi(self.store, self.core, self.rpc, self.ota, self.log, client_rpc_timeout=client_rpc_timeout,
                            provision_close=provision_close)
        self.mqtt = MqttServer(self.store, self.log, api, self.rpc, inactivity_timeout=inactivity)
        self.core.mqtt = self.rpc.mqtt = self.mqtt
        if self.mqtt_port is not None:
            self.mqtt_port = await self.mqtt.listen(self.host, self.mqtt_port)
        if self.mqtts_port is not None:
            from .tls import server_context

            ctx, self.tls_paths = server_context(self.tls_dir)
            ctx.load_verify_locations(self.tls_paths["ca"])
            ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate is wanted, not needed (spec-mqtt §1)
            self.mqtts_port = await self.mqtt.listen(self.host, self.mqtts_port, ssl_context=ctx)

    def ensure_device(self, name, token, profile_id=None):
        d = self.store.device_by_name(name)
        if d is None:
            try:
                return self.store.add_device(name, token=token, profile_id=profile_id)
            except Conflict as exc:
                raise SystemExit("tbsim: token %s is already used by another device" % token) from exc
        if d["cred_id"] != token:
            raise SystemExit("tbsim: device %s exists with another token" % name)
        return d

    def ensure_x509_device(self, name, pem):
        """A device whose credentials are this X.509 certificate (created, or its credentials set)."""
        from .dtls import cert_hash, pem_to_der

        der = pem_to_der(pem)
        d = self.store.device_by_name(name) or self.store.add_device(name)
        try:
            return self.store.set_credentials(d["id"], "X509_CERTIFICATE", cert_hash(der),
                                              pem.decode() if isinstance(pem, bytes) else pem)
        except Conflict as exc:
            raise SystemExit("tbsim: that certificate belongs to another device than %s" % name) from exc

    def banner(self):
        text = "tbsim: CoAP coap://%s:%d  REST http://%s:%d (device API /api/v1)  db %s" % (
            self.host, self.coap_port, self.host, self.http_port, self.db)
        if self.dtls is not None:
            text += "  CoAPS coaps://%s:%d (CA %s)" % (self.host, self.dtls_port, self.tls_paths["ca"])
        if self.https_port is not None and self.tls_paths:
            text += "  HTTPS https://%s:%d (CA %s)" % (self.host, self.https_port, self.tls_paths["ca"])
        if self.mqtt is not None and self.mqtt_port is not None:
            text += "  MQTT mqtt://%s:%d" % (self.host, self.mqtt_port)
        if self.mqtt is not None and self.mqtts_port is not None:
            text += "  MQTTS mqtts://%s:%d (CA %s)" % (self.host, self.mqtts_port, self.tls_paths["ca"])
        return text

    def _wake(self, device_id, payload):
        # sendMsgsAfterSleeping: the merged attribute update, then SendPendingRPCMsg (spec §13).
        if payload:
            self.core.notify_attributes(device_id, payload)
        self.rpc.send_pending(device_id)

    def _handle(self, ex):
        self.api.handle(ex)

    def _event(self, kind, peer, text):
        self.log.event(peer, text)

    async def stop(self):
        if self.mqtt is not None:
            await self.mqtt.close()
        if self.endpoint is not None:
            self.endpoint.close()
        if self.dtls is not None and self.dtls.transport is not None:
            self.dtls.transport.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.store is not None:
            self.store.close()
