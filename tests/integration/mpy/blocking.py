# The blocking face of Device for wake-report-sleep devices, on the unix port:
#   micropython blocking.py HOST PORT TOKEN
import sys

from tbdevice.blocking import BlockingDevice

host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
d = BlockingDevice(host, token, port=port)
d.connect()
d.send_telemetry({"wake": 1})
d.send_attributes({"battery": 3.7})
print("attrs", d.request_attributes(client_keys=["battery"]))
print("rpc", d.call_rpc("echo", {"n": 2}))
d.claim()
d.send_telemetry({"wake": 2}, ts=1700000000000)
d.close()
print("done")
