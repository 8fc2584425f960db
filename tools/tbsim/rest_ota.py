"""REST for OTA packages, with ThingsBoard's paths: create, upload, info, download, list (spec §10)."""

from aiohttp import web

from .ota import ALGORITHMS, PREFIX, checksum
from .store import Conflict

_TENANT = "2bd5b8f0-0000-4000-8000-000000000001"


def package_json(p):
    return {"id": {"entityType": "OTA_PACKAGE", "id": p["id"]}, "createdTime": p["created_time"],
            "tenantId": {"entityType": "TENANT", "id": _TENANT},
            "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": p["profile_id"]} if p["profile_id"] else None,
            "type": p["type"], "title": p["title"], "version": p["version"], "tag": p["tag"], "url": p["url"],
            "hasData": p["data"] is not None, "fileName": p["file_name"], "contentType": p["content_type"],
            "checksumAlgorithm": p["checksum_algorithm"], "checksum": p["checksum"],
            "dataSize": len(p["data"]) if p["data"] is not None else None, "additionalInfo": {}}


class OtaRest:
    def __init__(self, store, log, page):
        self.store = store
        self.log = log
        self.page = page

    def add_routes(self, r):
        r.add_post("/api/otaPackage", self.create)
        r.add_post("/api/otaPackage/{id}", self.upload)
        r.add_get("/api/otaPackage/info/{id}", self.info)
        r.add_get("/api/otaPackage/{id}", self.info)
        r.add_get("/api/otaPackage/{id}/download", self.download)
        r.add_get("/api/otaPackages", self.list)

    def _package(self, request):
        p = self.store.ota_package(request.match_info["id"])
        if p is None:
            raise web.HTTPNotFound(reason="Requested item wasn't found!")
        return p

    async def create(self, request):
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(reason="Invalid request body")
        if not isinstance(body, dict) or not body.get("title") or not body.get("version"):
            raise web.HTTPBadRequest(reason="OTA package title and version should be specified!")
        ptype = body.get("type") or "FIRMWARE"
        if ptype not in PREFIX:
            raise web.HTTPBadRequest(reason="Unknown OTA package type")
        ref = body.get("deviceProfileId")
        profile = ref.get("id") if isinstance(ref, dict) else None
        if profile is not None and self.store.profile(profile) is None:
            raise web.HTTPBadRequest(reason="OtaPackage is referencing to non-existent device profile!")
        # ThingsBoard saves a package without a device profile, but nothing can be done with it
        # after: the upload and the assignment fail (upload() and rest.py's _update_device).
        try:
            p = self.store.add_ota_package(ptype, body["title"], body["version"], profile, body.get("tag"),
                                           body.get("url") if body.get("isURL") else None)
        except Conflict:
            raise web.HTTPBadRequest(reason="OtaPackage with such title and version already exists!")
        if body.get("isURL") and body.get("checksumAlgorithm") in ALGORITHMS and body.get("checksum"):
            # A URL package may carry its checksum (spec §10.1); no data is stored for it.
            p = self.store.set_ota_data(p["id"], None, None, None, body["checksumAlgorithm"], body["checksum"])
        self.log.rest("POST", "/api/otaPackage", 200, "%s %s %s" % (ptype, p["title"], p["version"]))
        return web.json_response(package_json(p))

    async def upload(self, request):
        p = self._package(request)
        if p["profile_id"] is None:
            # BaseOtaPackageDataValidator.validateUpdate compares the stored package's device profile
            # with equals(): null there is a NullPointerException, answered 500 (spec §10, README).
            raise web.HTTPInternalServerError(
                reason="Cannot invoke \"DeviceProfileId.equals(Object)\" because the package's deviceProfileId is "
                       "null (tbsim: ThingsBoard takes data only for a package created with a deviceProfileId)")
        algorithm = request.query.get("checksumAlgorithm", "SHA256")
        if algorithm not in ALGORITHMS:
            raise web.HTTPBadRequest(reason="Unsupported checksum algorithm in tbsim: " + algorithm)
        post = await request.post()
        field = post.get("file")
        if field is None or not hasattr(field, "file"):
            raise web.HTTPBadRequest(reason="file is required")
        data = field.file.read()
        value = request.query.get("checksum") or checksum(algorithm, data)
        p = self.store.set_ota_data(p["id"], data, field.filename, field.content_type or "application/octet-stream",
                                    algorithm, value)
        self.log.rest("POST", request.path, 200, "%d bytes %s %s" % (len(data), algorithm, value))
        return web.json_response(package_json(p))

    async def info(self, request):
        return web.json_response(package_json(self._package(request)))

    async def download(self, request):
        p = self._package(request)
        if p["data"] is None:
            raise web.HTTPNotFound(reason="OTA package has no data")
        return web.Response(body=p["data"], content_type=p["content_type"] or "application/octet-stream",
                            headers={"Content-Disposition": "attachment;filename=%s" % p["file_name"]})

    async def list(self, request):
        return web.json_response(self.page([package_json(p) for p in self.store.ota_packages()], request))
