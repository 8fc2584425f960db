"""Who a CONNECT is (spec thingsboard-mqtt.md §2.2, §2.3): access token, MQTT_BASIC, X.509, or provisioning.

ThingsBoard's order: `provision` as user name or client id is a provisioning session; a client certificate on the
TLS port is X.509 and the user name is ignored; otherwise the (clientId, userName, password) tuple is looked up
(MqttTransportHandler.processConnect, DefaultTransportApiService.validateUserNameCredentials).
"""

import hashlib

from . import jsontypes

ACCEPTED = 0x00
IDENTIFIER_REJECTED = 0x02     # no user name or password, a non-blank client id that names no credentials
SERVER_UNAVAILABLE = 0x03      # a profile of another transport type (COAP, LWM2M, SNMP)
NOT_AUTHORIZED = 0x05          # every other refusal: 0x04 is never sent over MQTT 3.x (ReturnCodeResolver)
PROVISION = "provision"
_TRANSPORTS = ("DEFAULT", "MQTT")


def sha3(text):
    """EncryptionUtil.getSha3Hash: SHA3-256 of the UTF-8 text, lower-case hex."""
    return hashlib.sha3_256(text.encode("utf-8")).hexdigest()


def basic_credentials_id(client_id, user_name):
    """The credentials id ThingsBoard gives MQTT_BASIC credentials (DeviceCredentialsServiceImpl
    .formatSimpleMqttCredentials): SHA3(clientId|userName), SHA3(clientId), or the user name itself."""
    if client_id and user_name:
        return sha3(client_id + "|" + user_name)
    if client_id:
        return sha3(client_id)
    if user_name:
        return user_name
    raise ValueError("Both mqtt client id and user name are empty!")


def basic_value(device):
    """The stored {"clientId", "userName", "password"} of an MQTT_BASIC device."""
    try:
        value = jsontypes.loads(device["cred_value"] or "")
    except jsontypes.BadPayload:
        return {}
    return value if isinstance(value, dict) else {}


def is_provisioning(client_id, user_name):
    return user_name == PROVISION or client_id == PROVISION


def authenticate(store, client_id, user_name, password):
    """(device, CONNACK code) for a CONNECT without a client certificate; device is None when refused."""
    device = None
    if not user_name:
        # The "client id only" kind; such credentials cannot hold a password.
        if client_id:
            device = store.device_by_credentials("MQTT_BASIC", sha3(client_id))
    else:
        if client_id:
            basic = store.device_by_credentials("MQTT_BASIC", sha3(client_id + "|" + user_name))
            if basic is not None:
                value = basic_value(basic)
                if value.get("clientId") == client_id and value.get("userName") == user_name:
                    if value.get("password") and value.get("password") != (password or ""):
                        return None, NOT_AUTHORIZED  # a wrong password: no fallback to the user name
                    device = basic
        if device is None:
            device = store.device_by_credentials("ACCESS_TOKEN", user_name)  # any client id, any password
        if device is None:
            basic = store.device_by_credentials("MQTT_BASIC", user_name)  # the user-name-only kind
            if basic is not None:
                value = basic_value(basic)
                if not value.get("password") or value.get("password") == (password or ""):
                    device = basic
    if device is None:
        return None, refusal(client_id, user_name, password)
    return device, check_transport(store, device)


def refusal(client_id, user_name, password):
    """ReturnCodeResolver for unknown credentials: 0x02 only with no user name, no password and a client id."""
    if user_name is None and password is None and client_id and client_id.strip():
        return IDENTIFIER_REJECTED
    return NOT_AUTHORIZED


def check_transport(store, device):
    """A device whose profile is of another transport type than DEFAULT or MQTT is refused with 0x03."""
    profile = store.profile(device["profile_id"])
    if profile is not None and profile["transport_type"] not in _TRANSPORTS:
        return SERVER_UNAVAILABLE
    return ACCEPTED
