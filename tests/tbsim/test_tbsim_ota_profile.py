"""OTA packages belong to a device profile, as in ThingsBoard (issue 15 item 11): a package is assigned
only to devices of its profile ("Can't assign firmware with different deviceProfile!"), and one made
without a profile takes no data (ThingsBoard fails the upload with an internal error)."""
import json
import urllib.error
import urllib.request
import uuid


def upload(sim, pkg_id, data=b"\x01" * 100):
    boundary = uuid.uuid4().hex
    body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"fw.bin\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n" % boundary).encode() + data +
            ("\r\n--%s--\r\n" % boundary).encode())
    req = urllib.request.Request("%s/api/otaPackage/%s?checksumAlgorithm=SHA256" % (sim.http_url, pkg_id), data=body,
                                 method="POST", headers={"Content-Type": "multipart/form-data; boundary=" + boundary,
                                                         "X-Authorization": "Bearer " + sim.rest.jwt})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def device(sim):
    return sim.rest.get("/api/tenant/devices", deviceName=sim.device_name)


def assign(sim, pkg, field="firmwareId"):
    dev = device(sim)
    dev[field] = pkg["id"]
    return sim.rest.request("POST", "/api/device", dev)


def package(sim, version, profile, kind="FIRMWARE", data=True):
    body = {"title": "fw", "version": version, "type": kind}
    if profile is not None:
        body["deviceProfileId"] = profile
    pkg = sim.rest.post("/api/otaPackage", body)
    if data:
        status, pkg = upload(sim, pkg["id"]["id"])
        assert status == 200, pkg
    return pkg


def test_a_package_of_another_profile_is_refused(tbsim):
    sim = tbsim
    sim.rest.login()
    other = sim.rest.post("/api/deviceProfile", {"name": "other"})["id"]
    pkg = package(sim, "1.0", other)
    assert pkg["deviceProfileId"] == other
    status, body = assign(sim, pkg)
    assert status == 400 and body["message"] == "Can't assign firmware with different deviceProfile!", body
    assert device(sim)["firmwareId"] is None
    attrs = sim.rest.get("/api/plugins/telemetry/DEVICE/%s/values/attributes/SHARED_SCOPE" % device(sim)["id"]["id"])
    assert not [a for a in attrs if a["key"].startswith("fw_")], attrs
    # the device's own profile: taken
    mine = package(sim, "1.1", device(sim)["deviceProfileId"])
    status, body = assign(sim, mine)
    assert status == 200 and body["firmwareId"] == mine["id"], body


def test_a_package_without_a_profile_takes_no_data(tbsim):
    sim = tbsim
    sim.rest.login()
    pkg = sim.rest.post("/api/otaPackage", {"title": "fw", "version": "2.0", "type": "FIRMWARE"})
    assert pkg["deviceProfileId"] is None  # saved, as ThingsBoard does
    status, body = upload(sim, pkg["id"]["id"])
    assert status == 500 and "deviceProfileId is null" in body["message"], body
    status, body = assign(sim, pkg)
    assert status == 400 and body["message"] == "Can't assign firmware with empty data!", body
    # a URL package has no data to upload: its assignment fails the same way inside ThingsBoard
    url = sim.rest.post("/api/otaPackage", {"title": "fw", "version": "2.1", "type": "FIRMWARE", "isURL": True,
                                            "url": "http://127.0.0.1:1/fw.bin"})
    status, body = assign(sim, url)
    assert status == 500 and "deviceProfileId" in body["message"], body


def test_assignment_checks_in_thingsboards_words(tbsim):
    sim = tbsim
    sim.rest.login()
    profile = device(sim)["deviceProfileId"]
    status, body = sim.rest.request("POST", "/api/otaPackage", {
        "title": "fw", "version": "3.0", "type": "FIRMWARE",
        "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": "6b1b9a3e-0000-4000-8000-00000000dead"}})
    assert status == 400 and body["message"] == "OtaPackage is referencing to non-existent device profile!", body
    software = package(sim, "3.1", profile, kind="SOFTWARE")
    status, body = assign(sim, software)
    assert status == 400 and body["message"] == "Can't assign firmware with type: SOFTWARE", body
    empty = package(sim, "3.2", profile, data=False)
    status, body = assign(sim, empty, "softwareId")
    assert status == 400 and body["message"] == "Can't assign software with type: FIRMWARE", body
    status, body = assign(sim, empty)
    assert status == 400 and body["message"] == "Can't assign firmware with empty data!", body
    status, body = assign(sim, {"id": {"entityType": "OTA_PACKAGE", "id": "6b1b9a3e-0000-4000-8000-00000000beef"}})
    assert status == 400 and body["message"] == "Can't assign non-existent firmware!", body
