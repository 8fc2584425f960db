# ThingsBoard device API for MicroPython. Import the parts you use:
#   from tbdevice.device import Device            # asyncio facade
#   from tbdevice.blocking import BlockingDevice  # wake-report-sleep devices
#   from tbdevice.provision import provision
#   from tbdevice import errors
