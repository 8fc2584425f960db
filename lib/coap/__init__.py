# A small CoAP stack for MicroPython (RFC 7252, 7641, 7959). Import the parts you use:
#   from coap.client import Client, Route
#   from coap import message      # codec, type/code/option numbers
#   from coap.observe import Observation
