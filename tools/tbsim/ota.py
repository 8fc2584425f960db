"""Firmware/software OTA (spec §10): package assignment as shared attributes, the CoAP `fw/{token}` and
`sw/{token}` resource with Californium's Block2 behaviour, and the HTTP download."""

import hashlib
import zlib

from aiocoap.numbers import Code

from .core import SHARED_SCOPE
from .store import now_ms

FIRMWARE = "FIRMWARE"
SOFTWARE = "SOFTWARE"
PREFIX = {FIRMWARE: "fw", SOFTWARE: "sw"}
BY_PREFIX = {"fw": FIRMWARE, "sw": SOFTWARE}
ALGORITHMS = ("MD5", "SHA256", "SHA384", "SHA512", "CRC32", "MURMUR3_32", "MURMUR3_128")  # ota/ChecksumAlgorithm
_MAX_SZX = 6                 # preferred block size 1024 (spec §1)
_BLOCKWISE_LIFETIME = 300.0  # CF DEFAULT_BLOCKWISE_STATUS_LIFETIME; tests shorten it (--blockwise-lifetime)


def checksum(algorithm, data):
    """Guava HashCode.toString(): CRC32 prints its bytes little-endian (spec §10.1)."""
    if algorithm == "CRC32":
        return (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "little").hex()
    if algorithm in ("MURMUR3_32", "MURMUR3_128"):
        import mmh3  # Guava's Hashing.murmur3_32()/murmur3_128(), seed 0: h1|h2, little-endian

        return (mmh3.hash(data, signed=False).to_bytes(4, "little") if algorithm == "MURMUR3_32"
                else mmh3.hash_bytes(data)).hex()
    names = {"MD5": "md5", "SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}
    if algorithm in names:
        return hashlib.new(names[algorithm], data).hexdigest()
    raise ValueError("unsupported checksum algorithm " + algorithm)


def _q(queries):
    out = {}
    for q in queries:
        if "=" in q:
            k, v = q.split("=", 1)
            out[k] = v
    return out


class OtaService:
    def __init__(self, store, core, log, blockwise_lifetime=_BLOCKWISE_LIFETIME):
        self.store = store
        self.core = core
        self.log = log
        self.blockwise_lifetime = blockwise_lifetime
        self.block_cache = {}  # (peer, path, query) -> (data, expiry): CF Block2BlockwiseStatus

    def assign(self, device_id, ptype, package):
        """DefaultOtaPackageStateService.update: target telemetry, fw_state, and the shared attributes."""
        p = PREFIX[ptype]
        keys = [p + s for s in ("_title", "_version", "_tag", "_url", "_size", "_checksum_algorithm", "_checksum")]
        self.store.assign_ota(device_id, ptype, package["id"] if package else None)
        if package is None:
            self.core.delete_attributes(device_id, SHARED_SCOPE, keys)
            return
        ts = now_ms()
        target = [("target_%s_title" % p, "STRING", package["title"]),
                  ("target_%s_version" % p, "STRING", package["version"]), ("target_%s_ts" % p, "LONG", str(ts))]
        self.store.save_telemetry(device_id, [(ts, target + [(p + "_state", "STRING", "QUEUED")])])
        self.store.save_telemetry(device_id, [(ts + 1, [(p + "_state", "STRING", "INITIATED")])])
        attrs = [(p + "_title", "STRING", package["title"]), (p + "_version", "STRING", package["version"])]
        if package["tag"]:
            attrs.append((p + "_tag", "STRING", package["tag"]))
        removed = [] if package["tag"] else [p + "_tag"]
        if package["data"] is not None:
            attrs += [(p + "_size", "LONG", str(len(package["data"]))),
                      (p + "_checksum_algorithm", "STRING", package["checksum_algorithm"]),
                      (p + "_checksum", "STRING", package["checksum"])]
            removed.append(p + "_url")
        else:
            attrs.append((p + "_url", "STRING", package["url"] or ""))
            removed.append(p + "_size")  # URL packages: size, algorithm and checksum only when known
            if package["checksum_algorithm"] and package["checksum"]:
                attrs += [(p + "_checksum_algorithm", "STRING", package["checksum_algorithm"]),
                          (p + "_checksum", "STRING", package["checksum"])]
            else:
                removed += [p + "_checksum_algorithm", p + "_checksum"]
        self.core.save_attributes(device_id, SHARED_SCOPE, attrs)
        existing = {r["key"] for r in self.store.attributes(device_id, SHARED_SCOPE)}
        if existing.intersection(removed):
            self.core.delete_attributes(device_id, SHARED_SCOPE, removed)

    def select(self, device, ptype, query):
        """(status, data): status is 'ok', 'mismatch', 'none' or 'bad' (spec §10.2/§10.3)."""
        package = self.store.assigned_ota(device["id"], ptype)
        if package is None or package["data"] is None:
            return "none", None
        if ("title" in query and query["title"] != package["title"]) or (
                "version" in query and query["version"] != package["version"]):
            return "mismatch", None
        try:
            size = int(query.get("size") or 0)
            chunk = int(query.get("chunk") or 0)
        except ValueError:
            return "bad", None
        data = package["data"]
        if size > 0:
            data = data[size * chunk:size * chunk + size]
        return "ok", data

    # ---- CoAP (OtaPackageTransportResource + CF BlockwiseLayer)
    def handle_coap(self, call):
        ex = call.ex
        req = ex.request
        if req.code != Code.GET:
            return call.reply(Code.METHOD_NOT_ALLOWED, typed=False)
        if len(call.path) != 2:
            return call.reply(Code.UNAUTHORIZED, typed=False)
        block2 = req.opt.block2
        key = (ex.peer, tuple(call.path), tuple(req.opt.uri_query))
        now = ex.endpoint.loop.time()
        cached = self.block_cache.get(key)
        if cached is not None and cached[1] < now:
            del self.block_cache[key]
            cached = None
        if block2 is not None and block2.block_number > 0 and cached is not None:
            return self._follow_up(call, key, cached[0], block2)
        ex.accept()  # the OTA resource sends the empty ACK at once (spec §3)
        device = self.store.device_by_token(call.path[1])
        if device is None:
            return call.reply(Code.UNAUTHORIZED)
        call.device = device
        status, data = self.select(device, BY_PREFIX[call.path[0]], _q(req.opt.uri_query))
        if status != "ok":
            code = {"none": Code.NOT_FOUND, "mismatch": Code.BAD_REQUEST, "bad": Code.INTERNAL_SERVER_ERROR}[status]
            return call.reply(code)
        if not data:
            return call.no_answer("empty range: no response is ever sent")
        szx = min(block2.size_exponent, _MAX_SZX) if block2 is not None else _MAX_SZX
        size = 16 << szx
        if block2 is not None and block2.block_number > 0:
            # Random access without a cached transfer: the resource answers the whole range with its own
            # Block2 whose M flag is always 0 (spec §10.2).
            return call.reply(Code.CONTENT, data, extra=self._opts(block2.block_number, False, szx))
        if len(data) > size:
            self.block_cache[key] = (data, now + self.blockwise_lifetime)
            return call.reply(Code.CONTENT, data[:size], extra=self._opts(0, True, szx, len(data)))
        if block2 is not None:
            return call.reply(Code.CONTENT, data, extra=self._opts(0, False, szx))
        call.reply(Code.CONTENT, data)

    def _follow_up(self, call, key, data, block2):
        szx = min(block2.size_exponent, _MAX_SZX)
        size = 16 << szx
        offset = block2.block_number * size
        if offset >= len(data):
            return call.reply(Code.BAD_OPTION, typed=False)
        more = offset + size < len(data)
        if not more:
            del self.block_cache[key]
        # Served by Californium's blockwise layer, type unset: piggybacked.
        call.device = self.store.device_by_token(call.path[1])
        call.reply(Code.CONTENT, data[offset:offset + size], typed=False,
                   extra=self._opts(block2.block_number, more, szx))

    @staticmethod
    def _opts(num, more, szx, size2=None):
        def apply(msg):
            msg.opt.block2 = (num, more, szx)
            if size2 is not None:
                msg.opt.size2 = size2
        return apply
