# A blocking face of Device for devices that wake, report and sleep:
#     d = BlockingDevice(host, token); d.connect(); d.send_telemetry({...}); d.close()
# Each call runs the asyncio loop just long enough for that call.
import asyncio

from tbdevice.device import Device


class BlockingDevice:
    def __init__(self, host, token, **kw):
        self.device = Device(host, token, **kw)

    def _run(self, coro):
        async def call():
            self.device.link.resume()  # asyncio.run() starts a fresh loop each time
            try:
                return await coro
            finally:
                self.device.link.pause()

        return asyncio.run(call())

    def connect(self):
        return asyncio.run(self.device.connect())

    def close(self):
        return asyncio.run(self.device.close())

    def send_telemetry(self, values, ts=None):
        return self._run(self.device.send_telemetry(values, ts))

    def send_attributes(self, attrs):
        return self._run(self.device.send_attributes(attrs))

    def request_attributes(self, client_keys=None, shared_keys=None):
        return self._run(self.device.request_attributes(client_keys, shared_keys))

    def call_rpc(self, method, params=None, timeout_ms=10000):
        return self._run(self.device.call_rpc(method, params, timeout_ms))

    def claim(self, secret_key=None, duration_ms=None):
        return self._run(self.device.claim(secret_key, duration_ms))
