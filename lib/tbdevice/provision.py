# Device provisioning (spec §9): POST api/v1/provision with the profile's key and secret,
# no credentials needed. SUCCESS is 2.01 with the new credentials; NOT_FOUND and FAILURE
# are 4.00 with a JSON status; 4.00 with no body means key or secret was missing.
from coap import message as m
from coap.client import Route
from tbdevice import errors
from tbdevice.device import decode_json
from tbdevice.jsonenc import dumps


async def provision(client, device_key, device_secret, device_name=None, token=None):
    """Returns {"token": <access token>, "device_name": ..}; raises errors.ProvisionError."""
    body = {"provisionDeviceKey": device_key, "provisionDeviceSecret": device_secret}
    if device_name:
        body["deviceName"] = device_name
    if token:
        body["credentialsType"] = "ACCESS_TOKEN"
        body["token"] = token
    msg = await client.request(m.POST, Route("api/v1/provision"), dumps(body))
    if not msg.payload:
        raise errors.ProvisionError("provision: %s with no status" % m.code_str(msg.code), "BAD_REQUEST", msg.code)
    r = decode_json(msg.payload, "provision")
    status = r.get("status") if isinstance(r, dict) else None
    if status != "SUCCESS":
        why = r.get("errorMsg", "") if isinstance(r, dict) else ""
        raise errors.ProvisionError("provision: %s %s" % (status, why), status or "UNKNOWN", msg.code)
    if r.get("credentialsType", "ACCESS_TOKEN") != "ACCESS_TOKEN":
        raise errors.ProvisionError("provision: credentials of type %s" % r.get("credentialsType"), "FAILURE", msg.code)
    return {"token": r["credentialsValue"], "device_name": device_name}
