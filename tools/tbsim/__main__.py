"""python -m tbsim: run the local ThingsBoard device-API simulator until SIGINT/SIGTERM."""

import argparse
import asyncio
import errno
import signal
import sys

from .coapserver import Timing
from .server import PortError, TbSim


def _pair(text, sep):
    if sep not in text:
        raise argparse.ArgumentTypeError("expected NAME%sVALUE, got %r" % (sep, text))
    a, b = text.split(sep, 1)
    if not a or not b:
        raise argparse.ArgumentTypeError("empty part in %r" % text)
    return a, b


def _device(text):
    return _pair(text, "=")


def _schema(text):
    role, path = _pair(text, "=")
    if role not in ("telemetry", "attributes", "rpc_request", "rpc_response"):
        raise argparse.ArgumentTypeError("role must be telemetry, attributes, rpc_request or rpc_response")
    try:
        with open(path, encoding="utf-8") as fh:
            return role, fh.read()
    except OSError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def _x509(text):
    name, path = _pair(text, "=")
    try:
        with open(path, encoding="ascii") as fh:
            return name, fh.read()
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc))


def _profile(text):
    name, rest = _pair(text, "=")
    key, secret = _pair(rest, ":")
    return name, key, secret


def parse_args(argv):
    p = argparse.ArgumentParser(prog="tbsim", description="Local ThingsBoard-compatible device API server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--coap-port", type=int, default=5683, help="UDP port (0 = any free port)")
    p.add_argument("--http-port", type=int, default=8080, help="REST port (0 = any free port)")
    p.add_argument("--https-port", type=int, default=None,
                   help="also serve REST and the HTTP device API over TLS on this port (0 = any free port)")
    p.add_argument("--tls-dir", default="run/tbsim-tls",
                   help="test CA and server certificate for --https-port (generated there if missing)")
    p.add_argument("--dtls-port", type=int, default=None,
                   help="also serve the CoAP device API over DTLS 1.2 (coaps) on this UDP port (0 = any free port); "
                        "server certificate from the test CA in --tls-dir, client certificate optional (spec §12)")
    p.add_argument("--mqtt-port", type=int, default=None,
                   help="also serve ThingsBoard's MQTT device API on this TCP port (0 = any free port; "
                        "ThingsBoard's is 1883, which `make run` uses)")
    p.add_argument("--mqtts-port", type=int, default=None,
                   help="MQTT over TLS on this port (0 = any free port; ThingsBoard's is 8883): server certificate "
                        "from the test CA in --tls-dir, X.509 client certificates of that CA as credentials")
    p.add_argument("--db", default="run/tbsim.sqlite", help="SQLite file, or :memory:")
    p.add_argument("--device", action="append", type=_device, default=[], metavar="NAME=TOKEN",
                   help="device created at start if missing (repeatable)")
    p.add_argument("--x509-device", action="append", type=_x509, default=[], metavar="NAME=CERT.pem",
                   help="device whose credentials are this X.509 client certificate (token-less coaps, repeatable)")
    p.add_argument("--profile", action="append", type=_profile, default=[], metavar="NAME=KEY:SECRET",
                   help="provisioning profile, allow-create strategy (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no message log")
    t = p.add_argument_group("timing (defaults are ThingsBoard's; change only to speed up tests)")
    t.add_argument("--ack-timeout", type=float, default=2.0, help="CoAP ACK_TIMEOUT seconds")
    t.add_argument("--max-retransmit", type=int, default=4)
    t.add_argument("--rpc-ack-timeout", type=float, default=10.0,
                   help="seconds before an unacknowledged RPC notification is marked TIMEOUT")
    t.add_argument("--rpc-min-timeout-ms", type=int, default=5000, help="minimum REST RPC timeout")
    t.add_argument("--delay-ms", type=int, default=0,
                   help="answer every device request this much later (a slow core: empty ACK at 500 ms)")
    t.add_argument("--http-request-timeout-ms", type=int, default=60000,
                   help="HTTP device API long-poll default (transport.http.request_timeout)")
    t.add_argument("--client-rpc-timeout-ms", type=int, default=60000,
                   help="MQTT: a client-side RPC without a rule-chain reply gets {\"error\":\"timeout\"} after this "
                        "(transport.client_side_rpc.timeout)")
    t.add_argument("--mqtt-inactivity-timeout", type=float, default=600.0,
                   help="MQTT: seconds without a packet before a connection is closed (keepAlive is ignored)")
    t.add_argument("--provision-close-ms", type=int, default=60000,
                   help="MQTT: a provisioning session is closed this long after its response")
    p.add_argument("--serve-documented-firmware-path", action="store_true",
                   help="also serve OTA at api/v1/{token}/firmware|software over CoAP, as the seed pages promise "
                        "(a real ThingsBoard answers 4.00 there, spec §10.2)")
    t.add_argument("--blockwise-lifetime", type=float, default=300.0,
                   help="seconds a firmware Block2 transfer stays cached per peer (Californium: 300)")
    b = p.add_argument_group("protobuf (spec §11; REST can make any COAP profile PROTOBUF)")
    b.add_argument("--protobuf-device", action="append", type=_device, default=[], metavar="NAME=TOKEN",
                   help="device in the COAP profile 'protobuf' (payload type PROTOBUF), created if missing")
    b.add_argument("--protobuf-schema", action="append", type=_schema, default=[], metavar="ROLE=FILE.proto",
                   help="that profile's telemetry|attributes|rpc_request|rpc_response schema (default: spec §11.1)")
    w = p.add_argument_group("power saving of the default device profile (spec §13; REST can set any profile)")
    w.add_argument("--power-mode", choices=("PSM", "E_DRX", "DRX"), default=None,
                   help="clientSettings.powerMode of the default profile (default: none, downlinks always allowed)")
    w.add_argument("--psm-activity-timer-ms", type=int, default=None, help="PSM downlink window after an uplink")
    w.add_argument("--paging-window-ms", type=int, default=None, help="eDRX paging transmission window")
    w.add_argument("--edrx-cycle-ms", type=int, default=None, help="eDRX cycle (stored, not used, as in ThingsBoard)")
    return p.parse_args(argv)


def _power(args):
    if args.power_mode is None:
        return None
    return {"powerMode": args.power_mode, "psmActivityTimer": args.psm_activity_timer_ms,
            "pagingTransmissionWindow": args.paging_window_ms, "edrxCycle": args.edrx_cycle_ms}


async def amain(args):
    sim = TbSim(host=args.host, coap_port=args.coap_port, http_port=args.http_port, db=args.db,
                devices=args.device, profiles=args.profile, quiet=args.quiet,
                timing=Timing(ack_timeout=args.ack_timeout, max_retransmit=args.max_retransmit),
                rpc_ack_timeout=args.rpc_ack_timeout, rpc_min_timeout_ms=args.rpc_min_timeout_ms, power=_power(args),
                delay_ms=args.delay_ms, http_request_timeout_ms=args.http_request_timeout_ms,
                https_port=args.https_port, tls_dir=args.tls_dir,
                protobuf_devices=args.protobuf_device, protobuf_schemas=dict(args.protobuf_schema),
                dtls_port=args.dtls_port, x509_devices=args.x509_device, mqtt_port=args.mqtt_port,
                mqtts_port=args.mqtts_port, mqtt_inactivity_timeout=args.mqtt_inactivity_timeout,
                client_rpc_timeout_ms=args.client_rpc_timeout_ms, provision_close_ms=args.provision_close_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # A SIGINT ignored from the start stays ignored, as the shell's convention goes: a script's
        # background job (tools/run-demo's) is stopped by the script, which decides what a Ctrl-C
        # to the whole group means; stopping on it too could race the script's own handling.
        if signal.getsignal(sig) is not signal.SIG_IGN:
            loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start()
    except PortError:
        await sim.stop()  # what was opened before the port that failed
        raise
    sim.ota.blockwise_lifetime = args.blockwise_lifetime
    sim.api.serve_documented_firmware_path = args.serve_documented_firmware_path
    print(sim.banner(), flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
    print("tbsim: stopped", flush=True)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(amain(args))
    except PortError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            advice = "choose another with --%s-port N (0: any free port)" % exc.what
        else:
            advice = "check --host"
        print("tbsim: %s: %s" % (exc.strerror, advice), file=sys.stderr, flush=True)
        return 3
    except OSError as exc:
        print("tbsim: %s" % exc, file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
