"""The OTA REST recipe of docs/ota.md (issue 15 item 11), run as it is written against tbsim: the block after
`<!-- ota-recipe` with its first two lines (the settings) given the test's values. It must leave the
package assigned to the device, made for the device's profile, as ThingsBoard requires."""
import os
import shlex
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def recipe():
    with open(os.path.join(ROOT, "docs", "ota.md"), encoding="utf-8") as f:
        text = f.read()
    block = text.split("<!-- ota-recipe", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = block.splitlines()
    assert lines[0].startswith("TB=") and lines[1].startswith("TITLE="), lines[:2]  # the settings
    return "\n".join(lines[2:]) + "\n"


def run(sim, tmp_path, version, data):
    image = tmp_path / ("fw-%s.bin" % version)
    image.write_bytes(data)
    settings = {"TB": sim.http_url, "TB_USER": "tenant@thingsboard.org", "TB_PASSWORD": "tenant",
                "DEVICE": sim.device_name, "TITLE": "tb-micropython", "VERSION": version, "FILE": str(image)}
    script = "".join("%s=%s\n" % (k, shlex.quote(v)) for k, v in settings.items()) + recipe()
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_the_readme_recipe_publishes_and_assigns_a_package(tbsim, tmp_path):
    r = run(tbsim, tmp_path, "1.0.1", b"image-1" * 300)
    assert r.returncode == 0 and r.stderr == "", r.stdout + r.stderr
    dev = tbsim.rest.get("/api/tenant/devices", deviceName=tbsim.device_name)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("uploaded tb-micropython 1.0.1: 2100 bytes, SHA256 ") and len(lines) == 2, r.stdout
    assert lines[1] == "assigned to %s: firmwareId %s" % (tbsim.device_name, dev["firmwareId"]["id"]), r.stdout
    pkg = tbsim.rest.get("/api/otaPackage/info/%s" % dev["firmwareId"]["id"])
    assert (pkg["title"], pkg["version"], pkg["dataSize"]) == ("tb-micropython", "1.0.1", 2100)
    assert pkg["deviceProfileId"] == dev["deviceProfileId"] and pkg["checksumAlgorithm"] == "SHA256"
    attrs = {a["key"]: a["value"] for a in tbsim.rest.get(
        "/api/plugins/telemetry/DEVICE/%s/values/attributes/SHARED_SCOPE" % dev["id"]["id"])}
    assert attrs["fw_title"] == "tb-micropython" and attrs["fw_version"] == "1.0.1" and attrs["fw_size"] == 2100
    # the next version, the same commands
    r = run(tbsim, tmp_path, "1.0.2", b"image-2" * 300)
    assert r.returncode == 0, r.stdout + r.stderr
    dev = tbsim.rest.get("/api/tenant/devices", deviceName=tbsim.device_name)
    assert tbsim.rest.get("/api/otaPackage/info/%s" % dev["firmwareId"]["id"])["version"] == "1.0.2"


def test_a_refusal_stops_the_recipe_with_the_servers_words(tbsim, tmp_path):
    # the same version twice: ThingsBoard refuses the second package (title and version are unique)
    assert run(tbsim, tmp_path, "1.0.1", b"x").returncode == 0
    r = run(tbsim, tmp_path, "1.0.1", b"y")
    assert r.returncode != 0 and "refused: 400 OtaPackage with such title and version already exists!" in r.stderr, (
        r.stdout + r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
