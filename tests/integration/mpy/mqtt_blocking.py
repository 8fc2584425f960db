# BlockingDevice over MQTT (each call runs the event loop just long enough; the link's receive
# task is paused between calls), for tests/integration/test_mqtt_device.py:
#   micropython mqtt_blocking.py PORT TOKEN
import json
import sys

from tbdevice.blocking import BlockingDevice
from tbdevice.mqttlink import MqttLink

d = BlockingDevice("127.0.0.1", sys.argv[2], link=MqttLink("127.0.0.1", int(sys.argv[1])))
d.connect()
out = [d.send_telemetry({"blk": 1}), d.request_attributes(None, ["blk_attr"]), d.send_telemetry({"blk": 2}),
       d.call_rpc("echo", {"x": 1})]
d.close()
print(json.dumps(out))
