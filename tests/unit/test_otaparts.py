# OTA parts without a server (issue 4), shared by pytest (CPython) and tests/mpy_unit.py (unix
# port): the ESP32 partition sink against esp32_double, the boot pointer, bundles, the file
# sink's resume, the assignment rules, and the chunk and Block2 download loops.
import asyncio
import io
import json
import os

import bootslot
import config
import esp32_double
from tbdevice import otapart
from coap import block
from coap import message as m
from coap.errors import CoapError
from tbdevice import errors
from tbdevice import bundle, checksum, coapota, otablock2, otafetch
from tbdevice import otastate as st
from tbdevice.otapart import Esp32Sink, PartitionSink
from tbdevice.otasink import FileSink, SlotSink

IMAGE = bytes((i * 7 + (i >> 8)) & 255 for i in range(10000))


def app_image(size=10000, chip=0, project=b"micropython", version=b"v1.28.0-test"):
    """An ESP32 app image as ESP-IDF lays it out (esp_app_format.h): esp_image_header_t (magic
    0xE9, segment count, SPI mode/speed/size, entry, ..., chip id at 12), the first segment's
    header, then esp_app_desc_t (magic word 0xABCD5432, version at +16, project at +48)."""
    head = bytes((0xE9, 1, 2, 0x20)) + b"\x00\x00\x08\x40" + bytes(4) + bytes((chip & 255, chip >> 8)) + bytes(10)
    seg = b"\x20\x00\x40\x3f" + (size - 32).to_bytes(4, "little")
    desc = b"\x32\x54\xcd\xab" + bytes(12) + (version + bytes(32))[:32] + (project + bytes(32))[:32]
    out = head + seg + desc
    return out + IMAGE[: size - len(out)]


APP = app_image()


def _tmp(name):
    base = "build/unit-ota-" + name
    bundle._rmtree(base)  # the bundle code's own tree removal: a fresh, empty folder
    for d in ("build", base):
        try:
            os.mkdir(d)
        except OSError:
            pass
    return base


def _raises(exc, fn, *a):
    try:
        fn(*a)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


# ---- ESP32 partition sink ----------------------------------------------------------------
def _holds(mem, data):
    # mem starts with data; compared in pieces, as the unix port runs this in a small heap
    n = len(data)
    return all(bytes(mem[i : min(i + 512, n)]) == bytes(data[i : i + 512]) for i in range(0, n, 512))


def _write(sink, data, piece):
    for i in range(0, len(data), piece):
        sink.write(memoryview(data)[i : i + piece])


def test_partition_sink_writes_the_next_ota_slot_and_boots_it():
    esp = esp32_double.make()
    s = PartitionSink(esp)
    assert s.open({"size": len(APP)}, 0) == 0
    _write(s, APP, 1000)
    assert s.durable() == 8192  # two whole blocks; the rest waits in the block buffer
    s.close()
    flash = esp.flash
    assert _holds(flash.data["ota_0"], APP)
    assert bytes(flash.data["ota_0"][len(APP) : 12288]) == b"\xff" * (12288 - len(APP))
    assert flash.boot == "factory"
    s.apply({})
    assert flash.boot == "ota_0"
    s.confirm()
    assert flash.valid_marks == 1
    h = checksum.new("SHA256")
    s.replay(len(APP), h.update)
    want = checksum.new("SHA256")
    want.update(APP)
    assert checksum.hexdigest(h) == checksum.hexdigest(want)


def test_partition_sink_resumes_at_a_block_boundary():
    esp = esp32_double.make()
    s = PartitionSink(esp)
    s.open({"size": len(APP)}, 0)
    _write(s, APP[:7000], 700)
    # a reboot: a new sink, the record said 7000 bytes; only whole blocks are on flash
    s = PartitionSink(esp)
    off = s.open({"size": len(APP)}, 7000)
    assert off == 4096
    _write(s, APP[off:], 333)
    s.close()
    assert _holds(esp.flash.data["ota_0"], APP)


def test_partition_sink_refuses_without_ota_slots_or_room():
    e = _raises(st.OtaError, PartitionSink(esp32_double.make(ota=False)).open, {"size": 10}, 0)
    assert "no OTA app partition" in str(e)
    e = _raises(OSError, PartitionSink(esp32_double.make(app_size=8192)).open, {"size": 10000}, 0)
    assert e.args[0] == 28
    s = PartitionSink(esp32_double.make(app_size=8192))
    s.open({}, 0)  # size unknown (a URL package): the overflow shows while writing
    e = _raises(OSError, _write, s, APP, 1024)
    assert e.args[0] == 28


def test_partition_sink_rejected_image_is_an_ota_error():
    esp = esp32_double.make(image_check=lambda mem: mem[0] == 0xE9)  # the ESP image magic byte
    s = PartitionSink(esp)
    s.open({"size": len(IMAGE)}, 0)
    _write(s, IMAGE, 1024)
    s.close()
    assert "refused" in str(_raises(st.OtaError, s.apply, {}))
    assert esp.flash.boot == "factory"


def test_partition_sink_resumes_only_an_image():
    esp = esp32_double.make(app_size=3 * 4096)
    s = PartitionSink(esp)
    s.open({}, 0)
    _write(s, IMAGE[:9000], 1000)  # two blocks of something that is not an app image
    assert PartitionSink(esp).open({}, 9000) == 0


def _esp32_sink(sd, esp):
    return Esp32Sink(SlotSink(sd, "fw", bootslot), PartitionSink(esp))


def _bundle_bytes(version="2"):
    out = io.BytesIO()
    bundle.pack(out, {"title": "t", "version": version}, [("firmware/version.py", b"V = 2\n"), ("lib/big.py", IMAGE[:6000])])
    return out.getvalue()


def test_esp32_sink_takes_a_bundle_into_a_file_system_slot():
    # Stock MicroPython (no OTA partitions): an application bundle goes to a slot, on trial.
    sd = _tmp("esp32bundle")
    esp = esp32_double.make(ota=False, rollback=False, app_size=3 * 4096)
    bootslot.write(sd, {"slot": "b", "state": "ok"})
    data = _bundle_bytes()
    s = _esp32_sink(sd, esp)
    assert s.open({"title": "t", "version": "2", "size": len(data)}, 0) == 0
    assert _feed(s, data, 7) is None  # the first bytes arrive in pieces smaller than the sniff
    s.close()
    assert s.apply({"title": "t", "version": "2"}) == "an application bundle (.mpy v-) in slot a"
    assert bootslot.read(sd) == {"slot": "a", "prev": "b", "state": "trial"}
    with open(sd + "/slots/a/lib/big.py", "rb") as f:
        assert f.read() == IMAGE[:6000]
    assert esp.flash.erases == 0 and esp.flash.boot == "factory"  # the flash was not touched
    assert bootslot.choose(sd) == "a" and bootslot.on_trial()
    _esp32_sink(sd, esp).confirm()  # after the reboot: a new sink confirms whichever is on trial
    assert bootslot.read(sd) == {"slot": "a", "state": "ok"}


def test_esp32_sink_takes_an_image_into_the_ota_partition():
    sd = _tmp("esp32image")
    esp = esp32_double.make(app_size=3 * 4096)
    bootslot.write(sd, {"slot": "a", "state": "ok"})
    s = _esp32_sink(sd, esp)
    s.open({"size": len(APP)}, 0)
    assert _feed(s, APP, 20) is None
    assert s.durable() == 8192
    s.close()
    assert s.apply({}) == "an ESP32 app image (micropython v1.28.0-test) in partition ota_0"
    assert _holds(esp.flash.data["ota_0"], APP) and esp.flash.boot == "ota_0"
    assert _missing(sd + "/ota/fw.part") and _missing(sd + "/slots/b")
    # the new image runs its own code: no slot shadows it, on trial with the image
    assert bootslot.read(sd) == {"slot": None, "prev": "a", "state": "trial"}
    assert bootslot.choose(sd) is None and bootslot.on_trial()
    _esp32_sink(sd, esp).confirm()
    assert bootslot.read(sd) == {"slot": None, "state": "ok"} and esp.flash.valid_marks == 1
    # had it not confirmed, the next boot would have gone back to the slot (and the bootloader
    # to the old partition)
    os.mkdir(sd + "/slots")
    _slot(sd, "a", "1")
    bootslot.write(sd, {"slot": None, "prev": "a", "state": "trial"})
    assert bootslot.choose(sd) is None
    assert bootslot.choose(sd) == "a" and bootslot.read(sd)["failed"] is None


def test_esp32_sink_resumes_what_it_was_writing():
    sd = _tmp("esp32resume")
    esp = esp32_double.make(app_size=3 * 4096)
    data = _bundle_bytes()
    s = _esp32_sink(sd, esp)
    s.open({"title": "t", "version": "2"}, 0)
    _feed(s, data[:5000], 100)
    s.durable()
    s.close()
    s = _esp32_sink(sd, esp)  # a reboot: the file on flash says it was a bundle
    assert s.open({"title": "t", "version": "2"}, 5000) == 5000
    _feed(s, data[5000:], 100)
    s.close()
    h = checksum.new("MD5")
    s.replay(len(data), h.update)
    want = checksum.new("MD5")
    want.update(data)
    assert checksum.hexdigest(h) == checksum.hexdigest(want)
    s.discard()
    s = _esp32_sink(sd, esp)
    s.open({}, 0)
    _feed(s, APP[:9000], 1000)
    s.close()
    s = _esp32_sink(sd, esp)  # no bundle file: the partition's first block is an image
    assert s.open({}, 9000) == 8192
    _feed(s, APP[8192:], 1000)
    s.close()
    assert _holds(esp.flash.data["ota_0"], APP)
    assert _esp32_sink(sd, esp32_double.make(app_size=3 * 4096)).open({}, 9000) == 0  # nothing there: from the start


def test_esp32_sink_refuses_what_it_cannot_take():
    sd = _tmp("esp32refuse")
    s = _esp32_sink(sd, esp32_double.make(app_size=3 * 4096))
    s.open({}, 0)
    assert _feed(s, IMAGE, 16) == 48 and "neither an application bundle (TBB1) nor an ESP32 app image" in str(s.error)
    # stock MicroPython: an image has nowhere to go, said before any of it is written
    esp = esp32_double.make(ota=False, app_size=3 * 4096)
    s = _esp32_sink(sd, esp)
    s.open({}, 0)
    assert _feed(s, APP, 512) == 512 and "stock MicroPython takes application bundles" in str(s.error)
    assert esp.flash.erases == 0
    # an image for another chip (the running image's header says which this is)
    esp = esp32_double.make(app_size=3 * 4096)
    esp.flash.mem("factory")[: len(APP)] = APP
    s = _esp32_sink(sd, esp)
    s.open({}, 0)
    assert _feed(s, app_image(chip=9), 512) == 512 and "chip id 9, this chip's is 0" in str(s.error)
    assert esp.flash.erases == 0
    s = _esp32_sink(sd, esp)
    s.open({}, 0)
    _feed(s, b"TBB1", 4)
    s.close()
    assert "the package has 4 bytes" in str(_raises(st.OtaError, s.apply, {}))
    assert otapart.app_image(APP) and not otapart.app_image(APP[:30]) and not otapart.app_image(b"\xe9" + IMAGE)


def test_double_rolls_back_an_image_that_never_confirmed():
    d = _tmp("esp32flash")
    esp = esp32_double.make(path=d, app_size=3 * 4096)
    assert esp.Partition(esp.Partition.RUNNING).info()[4] == "factory"
    nxt = esp.Partition(esp.Partition.RUNNING).get_next_update()
    nxt.writeblocks(0, memoryview(APP)[:4096])
    nxt.set_boot()
    esp = esp32_double.make(path=d, app_size=3 * 4096)  # reboot: the new image runs, pending verification
    assert esp.flash.running == "ota_0" and esp.flash.states["ota_0"] == "pending"
    assert _holds(esp.flash.data["ota_0"], memoryview(APP)[:4096])  # kept across the reboot
    esp = esp32_double.make(path=d, app_size=3 * 4096)  # it reset before confirming: the bootloader rolls back
    assert esp.flash.running == "factory" and esp.flash.states["ota_0"] == "aborted"
    nxt = esp.Partition(esp.Partition.RUNNING).get_next_update()
    nxt.set_boot()
    esp = esp32_double.make(path=d, app_size=3 * 4096)
    esp.Partition.mark_app_valid_cancel_rollback()
    esp = esp32_double.make(path=d, app_size=3 * 4096)
    assert esp.flash.running == "ota_0" and esp.flash.states["ota_0"] == "valid"
    e = _raises(OSError, esp32_double.make(rollback=False, app_size=4096).Partition.mark_app_valid_cancel_rollback)
    assert e.args[0] == -261
    assert _raises(OSError, esp.Partition, "nope").args[0] == 2


def test_double_is_nor_flash():
    esp = esp32_double.make()
    p = esp.Partition("ota_1")
    p.ioctl(6, 0)
    p.writeblocks(0, b"\x0f" * 4096, 0)
    p.writeblocks(0, b"\xf0" * 4096, 0)  # not erased: bits only clear
    buf = bytearray(4)
    p.readblocks(0, buf)
    assert buf == b"\x00\x00\x00\x00"
    assert esp.Partition(esp.Partition.RUNNING).get_next_update().info()[4] == "ota_0"
    assert p.get_next_update().info()[4] == "ota_0"


# ---- boot pointer and bundles ------------------------------------------------------------
def _slot(sd, name, version):
    os.mkdir(sd + "/slots/" + name) if _missing(sd + "/slots/" + name) else None
    with open(sd + "/slots/" + name + "/manifest.json", "w") as f:
        f.write(json.dumps({"version": version}))


def _missing(p):
    try:
        os.stat(p)
        return False
    except OSError:
        return True


def test_boot_pointer_trial_confirm_and_fallback():
    sd = _tmp("boot")
    os.mkdir(sd + "/slots")
    assert bootslot.choose(sd) is None  # no pointer: factory code
    assert bootslot.free_slot(sd) == "a"
    _slot(sd, "a", "1")
    bootslot.switch(sd, "a")
    assert bootslot.choose(sd) == "a" and bootslot.on_trial()
    bootslot.confirm(sd)
    assert bootslot.read(sd) == {"slot": "a", "state": "ok"} and not bootslot.on_trial()
    assert bootslot.free_slot(sd) == "b"
    _slot(sd, "b", "2")
    bootslot.switch(sd, "b")
    assert bootslot.read(sd)["prev"] == "a"
    assert bootslot.choose(sd) == "b"  # trial boot, dies before confirming
    assert bootslot.choose(sd) == "a"  # falls back
    assert bootslot.read(sd) == {"slot": "a", "state": "ok", "failed": "b"}
    assert bootslot.free_slot(sd) == "b"
    # a pointer to an incomplete slot never boots it
    os.remove(sd + "/slots/b/manifest.json")
    bootslot.switch(sd, "b")
    assert bootslot.choose(sd) == "a"


def test_kept_confirms_the_slot_on_trial_without_the_sinks():
    # The boot after an update (firmware/otatrial.py) confirms through otaboot.Kept, without the
    # download's sinks: the boot pointer ends as SlotSink.confirm leaves it; sw has nothing to keep.
    from tbdevice.otaboot import kept_sinks

    sd = _tmp("kept")
    os.mkdir(sd + "/slots")
    _slot(sd, "a", "1")
    bootslot.switch(sd, "a")
    assert bootslot.choose(sd) == "a" and bootslot.on_trial()
    sinks = kept_sinks(sd)
    sinks["sw"]().confirm()
    assert bootslot.on_trial()
    sinks["fw"]().confirm()  # no esp32 module here: the slot only
    assert bootslot.read(sd) == {"slot": "a", "state": "ok"} and not bootslot.on_trial()


def test_the_boot_after_an_update_posts_updated_once_the_ota_code_is_gone():
    # firmware/otatrial.run confirms the image on trial without the link, lets the OTA modules
    # go, and only then posts UPDATED: a message sent by the trial kept their code beside the app
    # until it was answered, and at the edge of the heap that answer never came (the receive
    # found no heap), so the boot hung holding them (issue 13: tools/min-heap ota at 96 KB).
    if not hasattr(asyncio, "sleep_ms"):
        return  # CPython: Trial runs on MicroPython's asyncio (and time)
    import sys

    import otatrial

    sd = _tmp("trialboot")
    os.mkdir(sd + "/slots")
    _slot(sd, "a", "2")
    bootslot.switch(sd, "a")
    assert bootslot.choose(sd) == "a" and bootslot.on_trial()
    st.Record(sd, "fw").set(stage="applying", pkg={"title": "t", "version": "2"})
    posted = []

    class Hal:
        def reset(self):
            raise AssertionError("no reset: the image is healthy")

    class App:
        cfg = {}
        hal = Hal()
        log = None

        async def report(self, values):
            posted.append((values, "tbdevice.otaboot" in sys.modules or "tbdevice.otastate" in sys.modules))
            return True

    class Lazy:
        app = App()
        running = {"fw": ("t", "2"), "sw": None}
        real = None
        healthy_posted = True  # the app posted before the trial loaded: that was the health check
        looked = False

        async def look(self):
            Lazy.looked = True

    Lazy.sd = sd
    kept = dict(sys.modules)
    try:
        asyncio.run(otatrial.run(Lazy(), "fw"))
    finally:
        sys.modules.update(kept)
    assert posted == [({"fw_state": st.UPDATED}, False)]
    assert Lazy.looked and bootslot.read(sd) == {"slot": "a", "state": "ok"}
    assert st.Record(sd, "fw").get("stage") is None


def test_a_report_the_heap_has_no_room_for_is_queued():
    # firmware/app.App.report (the states OTA reports, UPDATED among them): a message the heap
    # cannot take now goes into the store-and-forward queue, as one the server did not answer.
    if not hasattr(asyncio, "sleep_ms"):
        return  # CPython: the app runs on MicroPython's asyncio (and time)
    from app import App

    class Device:
        async def send_telemetry(self, values):
            raise MemoryError("memory allocation failed, allocating 1296 bytes")

    class Hal:
        def epoch_ms(self):
            return 1700000000000

    app = App({"telemetry_interval_ms": 1000, "state_dir": _tmp("report")}, Hal(), log=None)
    app.device = Device()
    assert asyncio.run(app.report({"fw_state": "UPDATED"})) is False
    assert app.failed == 1 and len(app.forward.queue) == 1


def test_manifest_read_leaves_no_garbage_per_byte_and_holds_no_file_list():
    # The manifest is read one byte per call: bundle._Manifest must allocate nothing then, or
    # that garbage shreds the heap a download needs (issue 13: 131 KB of heap for an update,
    # out of memory with 24 KB free). Measured on the unix port with the collector off: 11
    # bytes allocated per manifest byte with json.load (64-bit; 6 on 32-bit), against 75 with a
    # memoryview sliced per byte. And its file list is checked, not kept: the app's 69 paths
    # were 6 KB of objects at the peak of an update's boot.
    import gc

    if not hasattr(gc, "mem_alloc"):
        return  # CPython: nothing to measure
    out = io.BytesIO()
    bundle.pack(out, {"title": "t", "version": "9"}, [("lib/pkg/module_%02d.mpy" % i, b"x") for i in range(60)])
    data = out.getvalue()
    f = io.BytesIO(data)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        man = bundle.read_manifest(f)
        used = gc.mem_alloc() - before
    finally:
        gc.enable()
    gc.collect()
    kept = gc.mem_alloc() - before
    assert man == {"title": "t", "version": "9"} and f.read(1) == b"x"
    n = data[4] << 8 | data[5]
    assert used < 20 * n, "%d bytes allocated to read a %d-byte manifest" % (used, n)
    assert kept < 256, "%d bytes kept after reading a manifest of 60 files" % kept


def test_manifest_reader_takes_json_as_json():
    # Whitespace, escapes, nesting, members after the file list: what any JSON writer may give.
    def read(text):
        head = text.encode()
        return bundle.read_manifest(io.BytesIO(bundle.MAGIC + bytes((len(head) >> 8, len(head) & 255)) + head))

    man = read(r' { "files" : [ [ "a/b.mpy" , 3 ] ,["c]\"{.mpy",0]] , "title":"t\"}", "mpy": {"version": [6, {"x": "]"}]} } ')
    assert man == {"title": 't"}', "mpy": {"version": [6, {"x": "]"}]}}
    assert read('{"files": []}') == {}
    f = io.BytesIO(bundle.MAGIC + b"\x00\x10" + b'{"files": [] }  ' + b"x")  # whitespace after the object
    assert bundle.read_manifest(f) == {} and f.read() == b"x"
    for bad in ('{"title": "t"}', '{"files": [["../x", 1]]}', '{"files": [["a", -1]]}', '{"files": [["a", 1]',
                '["files", []]', '{"files": [1, 2]}', '{"files": []', '{"files": [], "t": tru}',
                '{"files": [["a", 1], ["a"]]}', '{"files": [], "t": "%s"}' % ("x" * 600), '{"files": []} x'):
        _raises(bundle.BundleError, read, bad)


def test_bundle_round_trip_and_rejects():
    sd = _tmp("bundle")
    out = io.BytesIO()
    files = [("firmware/version.py", b"FW_VERSION = '9'\n"), ("lib/x/y.py", IMAGE[:3000])]
    bundle.pack(out, {"title": "t", "version": "9"}, files)
    with open(sd + "/b.tbb", "wb") as f:
        f.write(out.getvalue())
    man = bundle.unpack(sd + "/b.tbb", sd + "/slot", bytearray(256))
    assert man["version"] == "9"
    with open(sd + "/slot/lib/x/y.py", "rb") as f:
        assert f.read() == IMAGE[:3000]
    assert not _missing(sd + "/slot/manifest.json")
    with open(sd + "/cut.tbb", "wb") as f:
        f.write(out.getvalue()[:-10])
    _raises(bundle.BundleError, bundle.unpack, sd + "/cut.tbb", sd + "/slot2")
    assert _missing(sd + "/slot2/manifest.json")  # an incomplete slot is never marked complete
    evil = io.BytesIO()
    bundle.pack(evil, {"title": "t", "version": "9"}, [("../escape.py", b"x")])
    with open(sd + "/evil.tbb", "wb") as f:
        f.write(evil.getvalue())
    _raises(bundle.BundleError, bundle.unpack, sd + "/evil.tbb", sd + "/slot3")
    with open(sd + "/junk.tbb", "wb") as f:
        f.write(b"PK\x03\x04 not a bundle")
    _raises(bundle.BundleError, bundle.unpack, sd + "/junk.tbb", sd + "/slot4")


def _feed(sink, data, piece):
    # What the download does: the sink is written piece by piece; returns the bytes taken
    # before the sink refused (OtaError), or None when it took everything.
    for i in range(0, len(data), piece):
        try:
            sink.write(data[i : i + piece])
        except st.OtaError as e:
            sink.error = e
            return i + piece
    return None


def test_slot_sink_checks_the_bundle_matches_the_package():
    sd = _tmp("slotsink")
    out = io.BytesIO()
    bundle.pack(out, {"title": "t", "version": "2"}, [("firmware/version.py", b""), ("lib/big.py", IMAGE)])
    s = SlotSink(sd, "fw", bootslot)
    s.open({"title": "t", "version": "3", "size": len(out.getvalue())}, 0)
    taken = _feed(s, out.getvalue(), 64)
    assert taken is not None and taken < 200, taken  # as soon as the manifest was there
    assert "the bundle is t 2" in str(s.error)
    s.close()
    e = _raises(st.OtaError, s.apply, {"title": "t", "version": "3"})  # and at apply, before the slot
    assert "the bundle is t 2" in str(e)
    assert bootslot.read(sd) == {} and _missing(sd + "/slots/a")  # nothing unpacked, nothing switched


def test_mpy_versions_a_device_loads():
    v6 = 6 | 3 << 8  # sys.implementation._mpy of a 1.2x port without native code
    x64 = v6 | 2 << 10
    xtensawin = v6 | 10 << 10
    bundle.check_mpy({}, 0)  # sources: nothing to check
    bundle.check_mpy({"mpy": {"version": 6}}, v6)
    bundle.check_mpy({"mpy": {"version": 6}}, xtensawin)  # bytecode loads on any arch
    e = _raises(bundle.BundleError, bundle.check_mpy, {"mpy": {"version": 5}}, x64)
    assert "holds .mpy v5, this MicroPython loads v6" in str(e)
    native = {"mpy": {"version": 6, "sub_version": 3, "arch": 10, "march": "xtensawin"}}
    bundle.check_mpy(native, xtensawin)
    e = _raises(bundle.BundleError, bundle.check_mpy, native, x64)
    assert "native code for xtensawin" in str(e) and "arch 2" in str(e)
    _raises(bundle.BundleError, bundle.check_mpy, native, v6)  # a port without a native emitter
    e = _raises(bundle.BundleError, bundle.check_mpy, dict(native, mpy=dict(native["mpy"], sub_version=2)), xtensawin)
    assert "v6.2" in str(e)


def test_slot_sink_refuses_mpy_it_cannot_load_before_touching_a_slot():
    sd = _tmp("slotmpy")
    bootslot.write(sd, {"slot": "a", "state": "ok"})
    for need in ({"version": 5}, {"version": 6, "sub_version": 3, "arch": 4, "march": "armv6m"}):
        out = io.BytesIO()
        bundle.pack(out, {"title": "t", "version": "2", "mpy": need}, [("lib/big.mpy", IMAGE)])
        s = SlotSink(sd, "fw", bootslot)
        s.open({"title": "t", "version": "2", "size": len(out.getvalue())}, 0)
        taken = _feed(s, out.getvalue(), 128)
        # CPython has no sys.implementation._mpy: it cannot load any .mpy either
        assert taken is not None and taken < 300 and "cannot load the bundle" in str(s.error), (taken, need)
        s.discard()
        # a download resumed past the manifest is checked at open
        with open(sd + "/ota/fw.part", "wb") as f:
            f.write(out.getvalue()[:1000])
        e = _raises(st.OtaError, SlotSink(sd, "fw", bootslot).open, {"title": "t", "version": "2"}, 1000)
        assert "cannot load the bundle" in str(e)
        assert _missing(sd + "/slots/b")
    assert bootslot.read(sd) == {"slot": "a", "state": "ok"}
    with open(sd + "/ota/fw.part", "wb") as f:
        f.write(IMAGE[:100])
    e = _raises(st.OtaError, SlotSink(sd, "fw", bootslot).open, {"title": "t", "version": "2"}, 100)
    assert "not an application bundle" in str(e)


def test_file_sink_resumes_and_installs():
    sd = _tmp("filesink")
    s = FileSink(sd, "sw")
    assert s.open({"size": len(IMAGE)}, 0) == 0
    s.write(IMAGE[:6000])
    assert s.durable() == 6000
    s.close()
    s = FileSink(sd, "sw")
    assert s.open({"size": len(IMAGE)}, 5000) == 5000  # the record said 5000: write over the rest
    s.write(IMAGE[5000:])
    s.close()
    h = checksum.new("CRC32")
    s.replay(len(IMAGE), h.update)
    want = checksum.new("CRC32")
    want.update(IMAGE)
    assert checksum.hexdigest(h) == checksum.hexdigest(want)
    s.apply({"title": "data", "version": "7"})
    assert s.installed() == ("data", "7")
    with open(sd + "/ota/sw.bin", "rb") as f:
        assert f.read() == IMAGE
    assert FileSink(sd, "sw").open({"size": 10}, 99999) == 0  # no such partial file: from zero


# ---- assignment rules ---------------------------------------------------------------------
def test_target_and_same():
    shared = {"fw_title": "t", "fw_version": "1", "fw_size": 5, "fw_checksum": "AB", "fw_checksum_algorithm": "MD5",
              "sw_title": "s", "telemetry_interval_ms": 1000}
    p = st.target(shared, "fw")
    assert p == {"title": "t", "version": "1", "size": 5, "checksum": "AB", "checksum_algorithm": "MD5"}
    assert st.target(shared, "sw") is None  # no version
    assert st.target({"fw_title": "t", "fw_version": "1", "fw_size": True}, "fw") == {"title": "t", "version": "1"}
    assert st.same(p, {"title": "t", "version": "1", "checksum": "ab"})
    assert not st.same(p, {"title": "t", "version": "2"})
    assert not st.same(p, None)
    assert st.keys("sw")[0] == "sw_title"


def test_checksum_format_is_checked_before_a_download():
    assert checksum.malformed("SHA256", "AB" * 32) is None
    assert checksum.malformed("sha256", " " + "ab" * 32 + "\n") is None  # as checksum.matches() strips it
    assert checksum.malformed("CRC32", "0badf00d") is None and checksum.malformed("MURMUR3_128", "f" * 32) is None
    assert "not a SHA256 checksum (64 hex digits)" in checksum.malformed("SHA256", "ab" * 31)
    assert "not a MD5 checksum" in checksum.malformed("MD5", "g" * 32)
    assert "not a SHA512 checksum" in checksum.malformed("SHA512", "0x" + "a" * 126)
    assert "unknown checksum algorithm" in checksum.malformed("SHA3", "ab")
    # what the algorithms really produce has the length said (SHA384/512's pure-Python tables,
    # long-lived, would fragment the small heap this runs in on the unix port: test_checksum has them)
    for alg in ("MD5", "SHA256", "CRC32", "MURMUR3_32", "MURMUR3_128"):
        h = checksum.new(alg)
        h.update(b"x")
        assert checksum.malformed(alg, checksum.hexdigest(h)) is None, alg


def test_config_ota_ca_and_verify():
    def err(ota):
        try:
            config.validate({"host": "h", "token": "t", "ota": ota})
        except config.ConfigError as e:
            return str(e)

    assert err({"ca": "ca.pem", "verify": True}) is None and err({"verify": False}) is None
    assert "'ota.verify' must be true or false" in err({"verify": "no"})
    assert "'ota.ca' must be the path of a CA file" in err({"ca": ""})
    assert "'ota.cafile' is not a known key" in err({"cafile": "x"})
    # the free heap an update needs beside the app (below it, a boot of its own): KB, an integer
    assert err({"beside_app_kb": 0}) is None and err({"beside_app_kb": 200}) is None
    for bad in ("52", True, -1, 52.5):
        assert "'ota.beside_app_kb' must be an integer >= 0" in err({"beside_app_kb": bad}), bad


def test_progress_steps():
    got = []
    last = None
    for off in range(0, 1001, 50):
        p = st.progress_step(off, 1000, last)
        if p is not None:
            got.append(p)
            last = p
    assert got == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert st.progress_step(5, None, None) is None


def test_unload_gives_a_module_back_and_a_later_import_loads_it_again():
    import gc
    import sys

    import tbdevice

    st.unload("otaurl")  # not loaded here: nothing to do
    gc.collect()
    before = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0  # MicroPython: the heap in use
    from tbdevice import otaurl

    assert otaurl.fetch and "tbdevice.otaurl" in sys.modules
    del otaurl
    st.unload("otaurl", "otaurl")
    assert "tbdevice.otaurl" not in sys.modules and "otaurl" not in tbdevice.__dict__
    if before:
        gc.collect()
        assert gc.mem_alloc() - before < 1024  # of its ~2.7 KB, only its names stay (the qstr pool)
    from tbdevice import otaurl  # noqa: F811  (imported again, whole)

    assert otaurl.fetch


# ---- download loops -----------------------------------------------------------------------
def _collect():
    out = bytearray()

    async def data(mv):
        out.extend(mv)

    return out, data


def test_chunks_from_an_offset_and_their_checks():
    def getter(image, calls):
        async def get(k):
            calls.append(k)
            return image[k * 512 : k * 512 + 512]

        return get

    out, data = _collect()
    calls = []
    asyncio.run(otafetch.chunks(getter(IMAGE, calls), len(IMAGE), 512, 1300, data))
    assert bytes(out) == IMAGE[1300:] and calls[0] == 2 and calls[-1] == 19  # never past the end

    def fails(image, size):
        out, data = _collect()
        try:
            asyncio.run(otafetch.chunks(getter(image, []), size, 512, 0, data))
        except st.OtaError as e:
            return str(e)

    assert fails(IMAGE[:9000], len(IMAGE)).startswith("truncated")
    assert fails(IMAGE, len(IMAGE) - 100).startswith("size mismatch")
    assert "fw_size is missing" in fails(IMAGE, None)


class _Msg:
    def __init__(self, code, payload=b"", block2=None, size2=None):
        self.code = code
        self.payload = payload
        self.opts = {}
        if block2 is not None:
            self.opts[m.BLOCK2] = block.value(*block2)
        if size2 is not None:
            self.opts[m.SIZE2] = size2

    def uint(self, num):
        return self.opts.get(num)


class _Block2Server:
    # A Californium-like server: block 0 starts a cached transfer; a follow-up without one
    # gets the whole image with M=0 (spec §10.2). `forget_at` drops the cache once.
    def __init__(self, image, forget_at=None):
        self.image = image
        self.cached = False
        self.forget_at = forget_at
        self.asked = []

    async def exchange(self, code, route, payload, options, con, timeout_ms):
        num = None
        for n, v in options:
            if n == m.BLOCK2:
                num = block.parse(v)[0]
        self.asked.append(num or 0)
        if num == self.forget_at:
            self.cached = False
            self.forget_at = None
        if not num:
            self.cached = True
            return _Msg(m.CONTENT, self.image[:1024], (0, True, 6), len(self.image))
        if not self.cached:
            return _Msg(m.CONTENT, self.image[:1200], (num, False, 6))  # the cut whole image
        p = self.image[num * 1024 : num * 1024 + 1024]
        return _Msg(m.CONTENT, p, (num, (num + 1) * 1024 < len(self.image), 6))


def test_block2_sequential_restart_and_resume():
    srv = _Block2Server(IMAGE)
    out, data = _collect()
    assert asyncio.run(otablock2.fetch(srv, None, len(IMAGE), 0, data)) == len(IMAGE)
    assert bytes(out) == IMAGE and srv.asked == list(range(10))
    # the server forgets at block 4: block 0 again, then straight to block 4
    srv = _Block2Server(IMAGE, forget_at=4)
    out, data = _collect()
    asyncio.run(otablock2.fetch(srv, None, len(IMAGE), 0, data))
    assert bytes(out) == IMAGE and srv.asked == [0, 1, 2, 3, 4, 0, 4, 5, 6, 7, 8, 9]
    # resume from byte 5000 after a reboot: block 0 (to start the transfer), then block 4
    srv = _Block2Server(IMAGE)
    out, data = _collect()
    asyncio.run(otablock2.fetch(srv, None, len(IMAGE), 5000, data))
    assert bytes(out) == IMAGE[5000:] and srv.asked == [0, 4, 5, 6, 7, 8, 9]
    # Size2 against fw_size
    try:
        asyncio.run(otablock2.fetch(_Block2Server(IMAGE), None, len(IMAGE) + 1, 0, data))
        raise AssertionError("no size mismatch")
    except st.OtaError as e:
        assert "size mismatch" in str(e)


def test_block2_gives_up_when_the_transfer_keeps_vanishing():
    class Forgetful(_Block2Server):
        async def exchange(self, code, route, payload, options, con, timeout_ms):
            self.cached = False if options else self.cached
            return await _Block2Server.exchange(self, code, route, payload, options, con, timeout_ms)

    out, data = _collect()
    try:
        asyncio.run(otablock2.fetch(Forgetful(IMAGE), None, len(IMAGE), 0, data, restarts=2))
        raise AssertionError("no Timeout")
    except errors.Timeout as e:
        assert not isinstance(e, CoapError)  # the application sees tbdevice.errors only (issue 14 item 2)
    assert bytes(out) == IMAGE[:1024]


def _raised(coro):
    try:
        asyncio.run(coro)
    except Exception as e:  # the error itself is what the caller checks
        return e
    raise AssertionError("nothing raised")


def test_download_errors_are_tbdevice_errors():
    # A 5.xx is worth another try: tbdevice.errors.Timeout (with the code), never the CoAP
    # stack's own Timeout, whichever link fetched the chunk; a 4.04 will not mend: OtaError.
    class Server:
        def __init__(self, code):
            self.code = code

        async def exchange(self, code, route, payload, options, con, timeout_ms):
            return _Msg(self.code)

    out, data = _collect()
    for fetch in (otafetch.chunks(coapota.chunk_getter(Server(m.INTERNAL_SERVER_ERROR), None), 100, 50, 0, data),
                  otablock2.fetch(Server(m.INTERNAL_SERVER_ERROR), None, 100, 0, data)):
        e = _raised(fetch)
        assert isinstance(e, errors.Timeout) and not isinstance(e, CoapError), repr(e)
        assert e.code == m.INTERNAL_SERVER_ERROR and "5.00" in str(e)
    assert isinstance(_raised(otablock2.fetch(Server(m.NOT_FOUND), None, 100, 0, data)), st.OtaError)

    class HttpLink:
        def __init__(self, status):
            self.status = status

        async def fetch_firmware(self, title, version, chunk_size, k, what, timeout_ms):
            raise errors.for_status(self.status, what)

    pkg = {"title": "t", "version": "1"}
    e = _raised(otafetch.chunks(otafetch.http_chunk_getter(HttpLink(503), "fw", pkg, 50), 100, 50, 0, data))
    assert isinstance(e, errors.Timeout) and e.code == 503, repr(e)
    assert isinstance(_raised(otafetch.chunks(otafetch.http_chunk_getter(HttpLink(404), "fw", pkg, 50), 100, 50, 0,
                                              data)), st.OtaError)


def test_trial_confirms_once_the_heap_has_room():
    # The new image's confirmation runs beside the whole app: a MemoryError there (a full heap
    # for now) is tried again, not the end of the task with the image left on trial.
    if not hasattr(asyncio, "sleep_ms"):
        return  # CPython: Trial runs on MicroPython's asyncio (and time)
    from tbdevice import otaboot
    from tbdevice import otastate as st

    sd = _tmp("trialheap")
    pkg = {"title": "t", "version": "2"}
    st.Record(sd, "fw").set(stage="applying", pkg=pkg)

    class Sink:
        tries = 0

        def confirm(self):
            Sink.tries += 1
            if Sink.tries == 1:
                raise MemoryError("memory allocation failed, allocating 64 bytes")

    reports = []

    async def report(values):
        reports.append(values)
        return True

    async def main():
        trial = otaboot.Trial({"fw": Sink}, {"fw": ("t", "2")}, sd, report, None)
        trial.healthy()
        await trial.settle()
        await asyncio.wait_for(trial.idle(), 5)

    asyncio.run(main())
    assert Sink.tries == 2
    assert reports == [{"fw_state": st.UPDATED}]
    assert st.Record(sd, "fw").get("stage") is None
