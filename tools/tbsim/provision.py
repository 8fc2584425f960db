"""Device provisioning (spec §9, DeviceProvisionServiceImpl, JsonConverter.buildProvisionRequestMsg)."""

from . import jsontypes
from .mqttauth import basic_credentials_id
from .store import Conflict, random_id

ALLOW_CREATE = "ALLOW_CREATE_NEW_DEVICES"
NOT_FOUND = {"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"}
FAILURE = {"errorMsg": "Failed to provision device!", "status": "FAILURE"}


class BadRequest(ValueError):
    """Missing key/secret or unreadable request: CoAP 4.00 with no payload."""


def _string(obj, name):
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise BadRequest(name + " is not a primitive")
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def provision(store, payload):
    """Returns (ok, response dict). Raises BadRequest for a 4.00 without payload."""
    try:
        obj = jsontypes.loads(payload)
    except jsontypes.BadPayload as exc:
        # The real server falls back to protobuf here (spec §9); tbsim speaks JSON only.
        raise BadRequest("not JSON") from exc
    return provision_request(store, obj)


def provision_request(store, obj):
    """The provisioning of a parsed request (JSON object, or a protobuf request's fields): (ok, response dict)."""
    if not isinstance(obj, dict):
        raise BadRequest("not a JSON object")
    key = _string(obj, "provisionDeviceKey")
    secret = _string(obj, "provisionDeviceSecret")
    if key is None or secret is None:
        raise BadRequest("provisionDeviceKey and provisionDeviceSecret are required")
    if not key or not secret:
        return False, NOT_FOUND
    profile = store.profile_by_provision_key(key)
    if profile is None or profile["provision_secret"] != secret:
        return False, NOT_FOUND
    if profile["provision_type"] != ALLOW_CREATE:
        return False, FAILURE  # pre-provisioned devices are not modelled by tbsim
    name = _string(obj, "deviceName")
    if name is None:
        name = random_id()
    if not name.strip() or store.device_by_name(name) is not None:
        return False, FAILURE
    cred_type = _string(obj, "credentialsType") or "ACCESS_TOKEN"
    cred_value = None
    if cred_type == "ACCESS_TOKEN":
        cred_id = _string(obj, "token") or random_id()
        value = cred_id
    elif cred_type == "X509_CERTIFICATE":
        cred_id = _string(obj, "hash")
        if not cred_id:
            return False, FAILURE
        value = cred_id
    elif cred_type == "MQTT_BASIC":
        value = {"clientId": _string(obj, "clientId"), "userName": _string(obj, "username"),
                 "password": _string(obj, "password")}
        try:  # the id ThingsBoard's credentials service gives them, so that MQTT finds them (mqttauth)
            cred_id = basic_credentials_id(value["clientId"], value["userName"])
        except ValueError:
            return False, FAILURE
        cred_value = jsontypes.dumps(value)
    else:
        return False, FAILURE
    try:
        store.add_device(name, token=cred_id, profile_id=profile["id"], cred_type=cred_type, cred_value=cred_value)
    except Conflict:
        return False, FAILURE
    return True, {"credentialsValue": value, "credentialsType": cred_type, "status": "SUCCESS"}
