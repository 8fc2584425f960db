# The per-message path keeps its frames on the C stack (tools/mpyframes.py): MicroPython puts a
# frame of more than 11 words on the heap and frees it at return, a heap search on every call.
# Two functions are allowed a heap frame, each once per message: Client._send (flat on purpose:
# a dozen calls would cost more) and Client._read_one (its `except ... as e`).
import os

import mpyframes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOT = {
    "lib/coap/client.py": ["Client.stage", "Client.send", "Client._take", "Client._inline", "Client._left",
                           "Client.end", "Client._on_datagram", "Client._on_empty", "Client._match",
                           "Client._deliver", "Client._reply", "Client._send_small", "Client._dup",
                           "Client._remember", "_token", "_wake"],
    "lib/coap/transport.py": ["UdpTransport.send", "UdpTransport.recv"],
    "lib/tbdevice/coaplink.py": ["CoapLink.post", "CoapLink._rpc_route", "CoapLink._route", "CoapLink._result"],
    "lib/tbdevice/device.py": ["Device.send_telemetry", "Device._post"],
    "lib/tbdevice/codec.py": ["JsonCodec.write_telemetry"],
    "lib/tbdevice/jsonenc.py": ["dump", "plain"],
}
ALLOWED = {("lib/coap/client.py", "Client._send"), ("lib/coap/client.py", "Client._read_one")}


def test_per_message_functions_keep_their_frames_on_the_c_stack():
    bad = []
    for path, names in HOT.items():
        rows = {name: (words, where) for name, words, where, _ in mpyframes.report(os.path.join(ROOT, path))}
        for name in names:
            assert name in rows, (path, name, sorted(rows))
            if rows[name][1] != "stack":
                bad.append("%s %s: %d words (%s)" % (path, name, rows[name][0], rows[name][1]))
        for path2, name in ALLOWED:
            if path2 == path:
                assert rows[name][1] == "heap", (path, name)  # still one flat function each
    assert not bad, "\n".join(bad)
