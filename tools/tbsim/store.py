"""SQLite storage: devices, credentials, profiles, telemetry, attributes, RPC records, claims.

All calls are synchronous and short; tbsim runs them on its single asyncio thread.
"""

import contextlib
import json
import os
import secrets
import sqlite3
import string
import time
import uuid

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
  id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, created_time INTEGER NOT NULL,
  is_default INTEGER NOT NULL DEFAULT 0, transport_type TEXT NOT NULL DEFAULT 'DEFAULT',
  provision_type TEXT NOT NULL DEFAULT 'DISABLED', provision_key TEXT, provision_secret TEXT,
  transport_config TEXT);
CREATE TABLE IF NOT EXISTS devices (
  id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, type TEXT NOT NULL, profile_id TEXT NOT NULL,
  created_time INTEGER NOT NULL, cred_type TEXT NOT NULL DEFAULT 'ACCESS_TOKEN', cred_id TEXT UNIQUE NOT NULL,
  cred_value TEXT, rpc_seq INTEGER NOT NULL DEFAULT 0, transport_config TEXT);
CREATE TABLE IF NOT EXISTS ts_kv (
  device_id TEXT NOT NULL, key TEXT NOT NULL, ts INTEGER NOT NULL, vtype TEXT NOT NULL, v TEXT NOT NULL,
  PRIMARY KEY (device_id, key, ts));
CREATE TABLE IF NOT EXISTS attrs (
  device_id TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL, vtype TEXT NOT NULL, v TEXT NOT NULL,
  last_update_ts INTEGER NOT NULL, PRIMARY KEY (device_id, scope, key));
CREATE TABLE IF NOT EXISTS rpcs (
  id TEXT PRIMARY KEY, device_id TEXT NOT NULL, seq INTEGER NOT NULL, method TEXT NOT NULL, params TEXT NOT NULL,
  oneway INTEGER NOT NULL, status TEXT NOT NULL, created_time INTEGER NOT NULL, expiration_time INTEGER NOT NULL,
  retries INTEGER NOT NULL DEFAULT 0, response TEXT);
CREATE TABLE IF NOT EXISTS ota_packages (
  id TEXT PRIMARY KEY, created_time INTEGER NOT NULL, profile_id TEXT, type TEXT NOT NULL, title TEXT NOT NULL,
  version TEXT NOT NULL, tag TEXT, url TEXT, file_name TEXT, content_type TEXT, checksum_algorithm TEXT,
  checksum TEXT, data BLOB, UNIQUE (profile_id, type, title, version));
CREATE TABLE IF NOT EXISTS ota_assignments (
  device_id TEXT NOT NULL, type TEXT NOT NULL, package_id TEXT NOT NULL, PRIMARY KEY (device_id, type));
CREATE TABLE IF NOT EXISTS claims (
  device_id TEXT PRIMARY KEY, secret_key TEXT NOT NULL, duration_ms INTEGER NOT NULL, ts INTEGER NOT NULL);
"""

# DataConstants / DeviceProvisionServiceImpl: generated names and tokens are 20 characters.
_ALPHABET = string.ascii_lowercase + string.digits


def now_ms():
    return int(time.time() * 1000)


def random_id(n=20):
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


class Conflict(ValueError):
    """A unique name or credentials value is already taken."""


class Store:
    def __init__(self, path):
        if path != ":memory:":
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        if path != ":memory:":
            # One device message = one transaction; WAL + NORMAL keeps that cheap on a file.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        for table in ("profiles", "devices"):  # a database made before power saving (spec §13) existed
            cols = [r["name"] for r in self.db.execute("PRAGMA table_info(%s)" % table)]
            if "transport_config" not in cols:
                self.db.execute("ALTER TABLE %s ADD COLUMN transport_config TEXT" % table)
        if self.default_profile() is None:
            self.add_profile("default", default=True)

    def close(self):
        self.db.close()

    @contextlib.contextmanager
    def _transaction(self):
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _one(self, sql, *args):
        row = self.db.execute(sql, args).fetchone()
        return dict(row) if row is not None else None

    def _all(self, sql, *args):
        return [dict(r) for r in self.db.execute(sql, args).fetchall()]

    # ---- profiles
    def add_profile(self, name, default=False, provision_type="DISABLED", key=None, secret=None,
                    transport_type="DEFAULT"):
        pid = str(uuid.uuid4())
        try:
            self.db.execute(
                "INSERT INTO profiles (id, name, created_time, is_default, transport_type, provision_type, "
                "provision_key, provision_secret) VALUES (?,?,?,?,?,?,?,?)",
                (pid, name, now_ms(), 1 if default else 0, transport_type, provision_type, key, secret))
        except sqlite3.IntegrityError as exc:
            raise Conflict("profile %s exists" % name) from exc
        return self.profile(pid)

    def upsert_provision_profile(self, name, key, secret):
        existing = self._one("SELECT * FROM profiles WHERE name=?", name)
        if existing is None:
            return self.add_profile(name, provision_type="ALLOW_CREATE_NEW_DEVICES", key=key, secret=secret)
        self.db.execute("UPDATE profiles SET provision_type='ALLOW_CREATE_NEW_DEVICES', provision_key=?, "
                        "provision_secret=? WHERE id=?", (key, secret, existing["id"]))
        return self.profile(existing["id"])

    def set_transport_config(self, table, eid, cfg_json):
        """A profile's or a device's COAP or MQTT transport configuration (JSON text, or None for DEFAULT)."""
        assert table in ("profiles", "devices")
        self.db.execute("UPDATE %s SET transport_config=? WHERE id=?" % table, (cfg_json, eid))
        if table == "profiles":
            kind = json.loads(cfg_json).get("type", "COAP") if cfg_json else "DEFAULT"
            self.db.execute("UPDATE profiles SET transport_type=? WHERE id=?", (kind, eid))

    def profile(self, pid):
        return self._one("SELECT * FROM profiles WHERE id=?", pid)

    def profile_by_name(self, name):
        return self._one("SELECT * FROM profiles WHERE name=?", name)

    def default_profile(self):
        return self._one("SELECT * FROM profiles WHERE is_default=1")

    def profile_by_provision_key(self, key):
        return self._one("SELECT * FROM profiles WHERE provision_key=?", key)

    def profiles(self):
        return self._all("SELECT * FROM profiles ORDER BY created_time, name")

    # ---- devices
    def add_device(self, name, token=None, profile_id=None, dtype=None, cred_type="ACCESS_TOKEN", cred_value=None):
        profile = self.profile(profile_id) if profile_id else self.default_profile()
        if profile is None:
            raise KeyError("no such device profile")
        did = str(uuid.uuid4())
        token = token or random_id()
        try:
            self.db.execute(
                "INSERT INTO devices (id, name, type, profile_id, created_time, cred_type, cred_id, cred_value) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (did, name, dtype or profile["name"], profile["id"], now_ms(), cred_type, token, cred_value))
        except sqlite3.IntegrityError as exc:
            raise Conflict("device name or credentials already exist") from exc
        return self.device(did)

    def device(self, did):
        return self._one("SELECT * FROM devices WHERE id=?", did)

    def device_by_name(self, name):
        return self._one("SELECT * FROM devices WHERE name=?", name)

    def device_by_token(self, token):
        return self._one("SELECT * FROM devices WHERE cred_id=? AND cred_type='ACCESS_TOKEN'", token)

    def device_by_credentials(self, cred_type, cred_id):
        """The device whose credentials of this type have this id (MQTT_BASIC: see mqttauth.basic_credentials_id)."""
        return self._one("SELECT * FROM devices WHERE cred_id=? AND cred_type=?", cred_id, cred_type)

    def device_by_x509(self, cert_hash):
        """The device whose X509_CERTIFICATE credentials have this id (SHA3-256 of the base64 DER, spec §12)."""
        return self._one("SELECT * FROM devices WHERE cred_id=? AND cred_type='X509_CERTIFICATE'", cert_hash)

    def set_credentials(self, did, cred_type, cred_id, cred_value=None):
        try:
            with self._transaction():
                self.db.execute("UPDATE devices SET cred_type=?, cred_id=?, cred_value=? WHERE id=?",
                                (cred_type, cred_id, cred_value, did))
        except sqlite3.IntegrityError as exc:
            raise Conflict("credentials already used by another device") from exc
        return self.device(did)

    def devices(self):
        return self._all("SELECT * FROM devices ORDER BY created_time, name")

    def delete_device(self, did):
        for table in ("ts_kv", "attrs", "rpcs", "claims", "ota_assignments"):
            self.db.execute("DELETE FROM %s WHERE device_id=?" % table, (did,))
        return self.db.execute("DELETE FROM devices WHERE id=?", (did,)).rowcount > 0

    def next_rpc_seq(self, did):
        # DeviceActorMessageProcessor.rpcSeq: an integer counting up per device (spec §7).
        self.db.execute("UPDATE devices SET rpc_seq = rpc_seq + 1 WHERE id=?", (did,))
        return self._one("SELECT rpc_seq FROM devices WHERE id=?", did)["rpc_seq"]

    # ---- telemetry
    def save_telemetry(self, did, entries):
        rows = [(did, key, ts, vtype, v) for ts, kvs in entries for key, vtype, v in kvs]
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO ts_kv VALUES (?,?,?,?,?)", rows)

    def latest(self, did, keys=None):
        out = {}
        for key in keys if keys is not None else self.ts_keys(did):
            row = self._one("SELECT ts, vtype, v FROM ts_kv WHERE device_id=? AND key=? ORDER BY ts DESC LIMIT 1",
                            did, key)
            if row:
                out[key] = [row]
        return out

    def history(self, did, keys, start, end, limit, ascending=False):
        out = {}
        order = "ASC" if ascending else "DESC"
        for key in keys:
            rows = self._all("SELECT ts, vtype, v FROM ts_kv WHERE device_id=? AND key=? AND ts>=? AND ts<? "
                             "ORDER BY ts %s LIMIT ?" % order, did, key, start, end, limit)
            if rows:
                out[key] = rows
        return out

    def ts_keys(self, did):
        return [r["key"] for r in self._all("SELECT DISTINCT key FROM ts_kv WHERE device_id=? ORDER BY key", did)]

    # ---- attributes
    def save_attributes(self, did, scope, kvs, ts=None):
        ts = ts or now_ms()
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO attrs VALUES (?,?,?,?,?,?)",
                                [(did, scope, key, vtype, v, ts) for key, vtype, v in kvs])

    def attributes(self, did, scope, keys=None):
        rows = self._all("SELECT key, vtype, v, last_update_ts FROM attrs WHERE device_id=? AND scope=? "
                         "ORDER BY key", did, scope)
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if r["key"] in wanted]
        return rows

    def delete_attributes(self, did, scope, keys):
        deleted = []
        for key in keys:
            if self.db.execute("DELETE FROM attrs WHERE device_id=? AND scope=? AND key=?",
                               (did, scope, key)).rowcount:
                deleted.append(key)
        return deleted

    # ---- rpc
    def add_rpc(self, did, method, params_text, oneway, expiration_time):
        rid = str(uuid.uuid4())
        seq = self.next_rpc_seq(did)
        self.db.execute("INSERT INTO rpcs (id, device_id, seq, method, params, oneway, status, created_time, "
                        "expiration_time) VALUES (?,?,?,?,?,?,?,?,?)",
                        (rid, did, seq, method, params_text, 1 if oneway else 0, "QUEUED", now_ms(), expiration_time))
        return self.rpc(rid)

    def rpc(self, rid):
        return self._one("SELECT * FROM rpcs WHERE id=?", rid)

    def rpc_by_seq(self, did, seq):
        return self._one("SELECT * FROM rpcs WHERE device_id=? AND seq=?", did, seq)

    def pending_rpcs(self, did):
        # Pending = not answered, not expired, not failed (DeviceActorMessageProcessor.toDeviceRpcPendingMap).
        return self._all("SELECT * FROM rpcs WHERE device_id=? AND status IN ('QUEUED','SENT','DELIVERED','TIMEOUT') "
                         "AND NOT (oneway=1 AND status='DELIVERED') AND expiration_time>? ORDER BY seq",
                         did, now_ms())

    def set_rpc(self, rid, **fields):
        cols = ", ".join("%s=?" % k for k in fields)
        self.db.execute("UPDATE rpcs SET %s WHERE id=?" % cols, (*fields.values(), rid))
        return self.rpc(rid)

    # ---- OTA packages
    def add_ota_package(self, ptype, title, version, profile_id=None, tag=None, url=None):
        pid = str(uuid.uuid4())
        try:
            self.db.execute("INSERT INTO ota_packages (id, created_time, profile_id, type, title, version, tag, url) "
                            "VALUES (?,?,?,?,?,?,?,?)", (pid, now_ms(), profile_id, ptype, title, version, tag, url))
        except sqlite3.IntegrityError as exc:
            raise Conflict("OTA package with such title and version already exists") from exc
        return self.ota_package(pid)

    def set_ota_data(self, pid, data, file_name, content_type, algorithm, checksum):
        self.db.execute("UPDATE ota_packages SET data=?, file_name=?, content_type=?, checksum_algorithm=?, "
                        "checksum=? WHERE id=?", (data, file_name, content_type, algorithm, checksum, pid))
        return self.ota_package(pid)

    def ota_package(self, pid):
        return self._one("SELECT * FROM ota_packages WHERE id=?", pid)

    def ota_packages(self):
        return self._all("SELECT * FROM ota_packages ORDER BY created_time")

    def assign_ota(self, did, ptype, pid):
        if pid is None:
            self.db.execute("DELETE FROM ota_assignments WHERE device_id=? AND type=?", (did, ptype))
        else:
            self.db.execute("INSERT OR REPLACE INTO ota_assignments VALUES (?,?,?)", (did, ptype, pid))

    def assigned_ota(self, did, ptype):
        row = self._one("SELECT package_id FROM ota_assignments WHERE device_id=? AND type=?", did, ptype)
        return self.ota_package(row["package_id"]) if row else None

    # ---- claims
    def save_claim(self, did, secret_key, duration_ms):
        self.db.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?,?)", (did, secret_key, duration_ms, now_ms()))

    def claim(self, did):
        return self._one("SELECT * FROM claims WHERE device_id=?", did)
