# The reference app's optional parts (firmware/app.py), loaded only when the config asks for
# them: credentials other than the config's token (X.509, the stored token, provisioning),
# wake-report-sleep power saving, and the diagnostics sample.
import asyncio
import gc
import time

from tbdevice import errors


def _say(app, text):
    if app.log:
        app.log(text)


async def token(app, dev):
    # Credentials when the config has no token: an X.509 certificate, the stored token, or
    # provisioning through the device's open link (its modules loaded only then).
    cfg = app.cfg
    if cfg["transport"] in ("coaps", "mqtts") and (cfg.get("tls") or {}).get("cert"):
        _say(app, "credentials: X.509, the client certificate names the device (token-less routes)")
        return None
    m = cfg.get("mqtt") or {}
    if m.get("username") or m.get("client_id"):
        _say(app, "credentials: MQTT_BASIC, the config's mqtt client id / user name / password")
        return None
    from tbdevice import credentials

    creds = credentials.load(cfg["state_dir"])
    if creds:
        _say(app, "credentials: using the stored token of %s" % creds.get("device_name"))
        return creds["token"]
    from tbdevice.provision import provision

    p = cfg["provision"]
    name = p.get("device_name") or app.hal.unique_name()
    _say(app, "provision: asking for credentials as %s" % name)
    while True:
        try:
            creds = await provision(dev, p["device_key"], p["device_secret"], name, codec=app.codec)
            break
        except errors.ProvisionError as e:
            # NOT_FOUND (wrong key/secret) and FAILURE (name taken) will not mend by
            # themselves: say so clearly and stop.
            _say(app, "provision: refused: %s" % e)
            raise
        except errors.Timeout as e:
            _say(app, "provision: %r, retrying" % e)
            await asyncio.sleep_ms(5000)
    credentials.save(cfg["state_dir"], creds)
    _say(app, "provision: stored the new token for %s" % name)
    return creds["token"]


async def duty_cycle(app, window_ms):
    # Wake-report-sleep (spec §13): each report is an uplink that opens the server's
    # downlink window (PSM activity timer, eDRX paging window), in which the merged
    # attribute updates and the held RPCs arrive. Listen for window_ms after the last
    # datagram (a reply to an RPC is an uplink too and re-opens the window), then sleep
    # through the HAL until the next report is due.
    link = app.device.link
    while True:
        t0 = time.ticks_ms()
        app.take_sample()
        err = await app.forward.flush()  # this sample and whatever earlier wakes could not send
        if err is not None:
            app.failed += 1
            _say(app, "telemetry: %s, %d queued for the next wake" % (err, len(app.forward.queue)))
            await app.device.reconnect()  # no answer: a new socket, the observations re-register
        heard = link.heard()  # a link that cannot tell (HTTP) has no window to wait out
        if err is not None and heard is not None:
            heard = time.ticks_ms()  # a new socket: listen a window for the re-registrations' answers
        while heard is not None and time.ticks_diff(time.ticks_ms(), heard) < window_ms:
            await asyncio.sleep_ms(window_ms - time.ticks_diff(time.ticks_ms(), heard))
            heard = link.heard()
        left = app.interval_ms - time.ticks_diff(time.ticks_ms(), t0)
        if left > 0:
            _say(app, "power: %s, sleeping %d ms" % (app.power["mode"], left))
            app.hal.light_sleep(left)  # the board stops; nothing is received meanwhile
            await app.hal.connect_network()
            _say(app, "power: awake")


def diagnostics(app):
    """The slow-cadence health sample (diagnostics_interval_ms); None values left out."""
    d = app.device
    f = app.forward
    gc.collect()
    st = d.link.stats()
    v = {
        "retransmissions": st["retransmissions"],
        "reconnects": d.reconnects,
        "queue_dropped": f.queue.dropped,
        "free_heap": app.hal.free_heap(),
    }
    if st.get("rx_no_heap"):  # CoAP reads that found no heap
        v["rx_no_heap"] = st["rx_no_heap"]
    if app.hal.rejoins is not None:  # Wi-Fi boards: network rebuilds by the supervisor
        v["wifi_rejoins"] = app.hal.rejoins
    rssi = app.hal.rssi()
    if rssi is not None:
        v["rssi"] = rssi
    if f.last_error:
        v["last_error"] = f.last_error
    return v

async def diagnostics_loop(app):
    while True:
        await asyncio.sleep_ms(app.diagnostics_ms)
        try:
            app.forward.sample(diagnostics(app))
        except MemoryError:  # a full heap for now, as for the app's samples: the next one
            print("device: out of memory: diagnostics skipped")  # a constant: printed without heap
