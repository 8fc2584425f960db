# OTA in the reference app: the `ota` config key (DESIGN §3), the board's sinks and the
# running versions, handed to tbdevice.ota.Ota. A board's hal may offer ota_sinks(); the
# default is what file-system boards need:
#   unix port, Pico W: fw = an application bundle in a slot (firmware/bootslot.py)
#   ESP32:             fw = the next OTA app partition (esp32.Partition)
#   every board:       sw = a data package kept as state_dir/ota/sw.bin
from tbdevice.ota import Ota
from tbdevice.otasink import FileSink, SlotSink
from version import FW_TITLE, FW_VERSION


def default_sinks(state_dir):
    try:
        import esp32  # noqa: F401 (feature detection, DESIGN §4.7)

        from tbdevice.otapart import PartitionSink

        fw = PartitionSink
    except ImportError:
        import bootslot

        def fw():
            return SlotSink(state_dir, "fw", bootslot)

    return {"fw": fw, "sw": lambda: FileSink(state_dir, "sw")}


def make_ota(app):
    cfg = app.cfg
    o = cfg.get("ota") or {}
    sd = cfg["state_dir"]
    hal = app.hal
    sinks = hal.ota_sinks() if hasattr(hal, "ota_sinks") else default_sinks(sd)
    running = {"fw": (FW_TITLE, FW_VERSION), "sw": FileSink(sd, "sw").installed()}
    return Ota(app.device, sinks, running, sd, app.report, hal.reset, mode=o.get("mode", "chunk"),
               chunk_size=o.get("chunk_size", 1024), path=o.get("path", "fw"), timeout_ms=o.get("timeout_ms", 10000),
               retry_ms=o.get("retry_ms", 5000), health_timeout_ms=o.get("health_timeout_ms", 120000), log=app.log)
