# Device provisioning (spec §9): POST api/v1/provision with the profile's key and secret,
# no credentials needed. SUCCESS is 2.01 with the new credentials; NOT_FOUND and FAILURE
# are 4.00 with a JSON status; 4.00 with no body means key or secret was missing.
from tbdevice import errors
from tbdevice.link import PROVISION


async def provision(link, device_key, device_secret, device_name=None, token=None, codec=None):
    """Returns {"token": <access token>, "device_name": ..}; raises errors.ProvisionError.
    `link`: a Device (which re-opens its link after a fault), an open link, or a coap Client."""
    if not hasattr(link, "set_token"):  # a bare coap.client.Client (README's first form), not a link
        from tbdevice.coaplink import CoapLink

        link = CoapLink(None, client=link)
    if codec is None:
        from tbdevice.codec import JsonCodec

        codec = JsonCodec()
    payload = await link.request(PROVISION, codec.provision(device_key, device_secret, device_name, token))
    r = codec.provision_response(payload)
    status = r.get("status")
    if status != "SUCCESS":
        raise errors.ProvisionError("provision: %s %s" % (status, r.get("errorMsg", "")), status or "UNKNOWN")
    if r.get("credentialsType", "ACCESS_TOKEN") != "ACCESS_TOKEN":
        raise errors.ProvisionError("provision: credentials of type %s" % r.get("credentialsType"), "FAILURE")
    return {"token": r["credentialsValue"], "device_name": device_name}
