# Provisioning over MQTT (wire-mqtt §10), loaded only when a device provisions itself: a session of
# its own, CONNECT with the user name "provision" (no credentials are checked), PUBLISH the request
# on /provision/request at QoS 1, and the answer comes on /provision/response (with or without a
# subscription). The device disconnects at once and connects again with what it got; the main
# link is not touched (it may have no credentials yet).
import asyncio

from tbdevice import errors
from tbdevice import mqttcodec as mc
from tbdevice.mqttconn import Wire

_REQUEST = "/provision/request"
_RESPONSE = b"/provision/response"


async def provision(link, body, timeout_ms):
    """The provisioning answer's payload; errors.Timeout when none came in time, OSError when
    the server could not be reached or closed the session first."""
    w = Wire(512)
    try:
        return await asyncio.wait_for_ms(_session(link, w, body), timeout_ms)
    except asyncio.TimeoutError:
        raise errors.Timeout("provision: no answer in %d ms" % timeout_ms)
    except ValueError as e:  # mqttcodec.Malformed
        raise OSError(71, "provision: %s" % e)
    finally:
        w.close()


async def _session(link, w, body):
    await w.dial(link.host, link.port, link.tls, link.host)
    w.write(mc.connect("provision", "provision", None, 0))
    w.write(mc.publish(_REQUEST, body, 1, 1))  # may follow the CONNECT at once (wire-mqtt §2.4)
    await w.flush()
    while True:
        buf, t, first, i, end = await w.packet()
        if t == mc.CONNACK and mc.connack(buf, i)[1]:
            raise errors.ProvisionError("provision: CONNACK %d" % mc.connack(buf, i)[1], "FAILURE")
        if t == mc.PUBLISH:
            qos, a, b, pid, p = mc.publish_parts(first, buf, i, end)
            if qos:
                w.write(mc.puback(pid))
            if b - a == len(_RESPONSE) and buf.startswith(_RESPONSE, a):
                answer = bytes(buf[p:end])
                w.write(mc.DISCONNECT_PACKET)
                await w.flush()
                return answer
