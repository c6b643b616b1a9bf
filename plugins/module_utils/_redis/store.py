# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where Redis backups live: the directory store (one `<id>.rdb` and its `<id>.json` metadata per backup),
the atomic copy into it, `redis-check-rdb`, and the retention plan (pure: no I/O).

A backup exists when its metadata does; it can be restored from when the metadata says `verified` (sha256 of
the stored copy taken while copying, and `redis-check-rdb` passed on the stored copy, not on the source).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time

from ansible_collections.erlmcp.dr.plugins.module_utils._common.aws import boto3_missing
from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import fsync_folder, write_atomic
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.client import RedisError

METADATA_FORMAT = "erlmcp.dr/redis-backup/1"
BACKUP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CHUNK = 1024 * 1024
RDB_MAGIC = re.compile(rb"^REDIS(\d{4})$")


def check_backup_id(backup_id, parameter="backup_id"):
    if not BACKUP_ID.match(backup_id or "") or backup_id.endswith((".json", ".rdb", ".tmp")):
        raise RedisError("%s %r is not a backup id: expected 1-128 letters, digits, '.', '_' or '-', starting with a "
                         "letter or digit (%s)" % (parameter, backup_id, parameter))
    return backup_id


class DirectoryStore(object):
    """Backups as files in one directory on the host running the module."""

    kind = "directory"

    def __init__(self, path):
        self.path = os.path.abspath(path)

    def rdb_path(self, backup_id):
        return os.path.join(self.path, backup_id + ".rdb")

    def metadata_path(self, backup_id):
        return os.path.join(self.path, backup_id + ".json")

    def check_writable(self, create):
        """Precondition of a backup: the store is (or can be made) a directory we can write in.

        create=False (check mode) only looks; create=True makes it (0700) and writes a probe file.
        """
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RedisError("the store %s is not a directory (store_dir)" % self.path)
        if not create:
            existing = self.path
            while not os.path.exists(existing):
                existing = os.path.dirname(existing)
            if not os.access(existing, os.W_OK | os.X_OK):
                raise RedisError("the store %s is not writable: %s does not let this user (uid %s) write (store_dir)"
                                 % (self.path, existing, os.geteuid()))
            return
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.path, prefix=".write-probe.")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise RedisError("the store %s is not writable: %s (store_dir)" % (self.path, exc.strerror or exc)) \
                from None

    def read(self, backup_id):
        """The metadata of one backup, or None when the store has none by that id."""
        try:
            with open(self.metadata_path(backup_id)) as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("format") == METADATA_FORMAT else None

    def list(self):
        """Every backup's metadata (backups whose metadata cannot be read are left out), oldest first."""
        if not os.path.isdir(self.path):
            return []
        found = []
        for name in os.listdir(self.path):
            if name.endswith(".json") and not name.startswith("."):
                data = self.read(name[:-len(".json")])
                if data is not None and data.get("id") == name[:-len(".json")]:
                    found.append(data)
        return sorted(found, key=_age_key)

    def write_metadata(self, metadata):
        write_atomic(self.metadata_path(metadata["id"]), json.dumps(metadata, indent=2, sort_keys=True) + "\n",
                     0o600)

    def delete(self, backup_id):
        """Metadata first (the backup stops existing), then its RDB copy."""
        for path in (self.metadata_path(backup_id), self.rdb_path(backup_id)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def put_rdb(self, source, backup_id, check):
        """Atomic copy into the store, then `check` on the stored copy. Returns (size, sha256, check result,
        durations)."""
        began = time.monotonic()
        size, digest = copy_atomic(source, self.rdb_path(backup_id))
        copied = time.monotonic()
        result = check(self.rdb_path(backup_id))
        return size, digest, result, dict(copy=round(copied - began, 3), check=round(time.monotonic() - copied, 3))

    def stored_sha256(self, backup_id):
        """The sha256 of the stored copy as it is now, or None when it is missing."""
        path = self.rdb_path(backup_id)
        return sha256_of(path) if os.path.isfile(path) else None

    def local_rdb(self, metadata, staging):
        """Where the backup's RDB can be read on this host: the stored copy itself (staging is not used)."""
        return self.rdb_path(metadata["id"])


def copy_atomic(source, dest):
    """Copy source to dest through a temp file in dest's folder (0600, fsync, rename, fsync of the folder).

    Returns (size, sha256 hex of the bytes written). The temp file is removed on any failure.
    """
    folder = os.path.dirname(os.path.abspath(dest))
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".%s." % os.path.basename(dest), suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_folder(folder)
    return size, digest.hexdigest()


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def rdb_file_version(path):
    """The RDB format version in the file's header (`REDIS0010` -> 10), or None when it has none."""
    with open(path, "rb") as handle:
        match = RDB_MAGIC.match(handle.read(9))
    return int(match.group(1)) if match else None


def check_rdb(tool, path, timeout):
    """Run redis-check-rdb on path: dict(ok, output (last lines), aux (AUX fields), keys_read, expires,
    already_expired). Raises RedisError when the tool cannot be run or does not finish in time."""
    try:
        # Not AnsibleModule.run_command: the engine has no module object and the check must stop at check_timeout.
        proc = subprocess.run(  # pylint: disable=ansible-bad-function
            [tool, path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=timeout, check=False)
    except FileNotFoundError:
        raise RedisError("redis-check-rdb not found at %r: install redis-tools (Debian's redis-server brings it) "
                         "or set check_rdb_path" % tool) from None
    except subprocess.TimeoutExpired:
        raise RedisError("redis-check-rdb did not finish checking %s within %ss (check_timeout)" % (path, timeout)) \
            from None
    output = proc.stdout.decode("utf-8", "replace")
    return parse_check_output(output, proc.returncode)


UNCHECKSUMMED = "saved with checksum disabled"
UNCHECKSUMMED_REASON = ("the RDB was saved with its checksum disabled (CRC64 0), so redis-check-rdb and the loading "
                        "server cannot tell a changed value from the saved one; the server must write checksums "
                        "(rdbchecksum yes, its default)")


def parse_check_output(output, returncode):
    """redis-check-rdb's output: ok, the reason when not (what it says after RDB ERROR DETECTED, not its last
    lines, which are counters), the AUX fields and counters. An RDB saved without its checksum is not ok: nothing
    would detect a value changed in it (issue 16 row 11)."""
    aux = dict(re.findall(r"AUX FIELD ([\w-]+) = '([^']*)'", output))
    found = re.findall(r"\[info\] (\d+) (keys read|expires|already expired)", output)
    numbers = dict((what, int(n)) for n, what in found)
    lines = [line for line in output.splitlines() if line.strip()]
    unchecksummed = UNCHECKSUMMED in output
    ok = returncode == 0 and "RDB looks OK" in output and not unchecksummed
    reason = None
    if not ok:
        reason = UNCHECKSUMMED_REASON if unchecksummed and returncode == 0 else check_failure_reason(lines, returncode)
    return dict(ok=ok, returncode=returncode, output=lines[-12:], reason=reason, checksum=not unchecksummed,
                aux=aux, keys_read=numbers.get("keys read"), expires=numbers.get("expires"),
                already_expired=numbers.get("already expired"))


def metadata_hmac(metadata, key):
    """HMAC-SHA256 (hex) of a backup's metadata (every field but `hmac`, as canonical JSON) under key.

    Why: the sha256 in the metadata only says the RDB is the file the metadata describes; whoever can write the
    store can change both (a value changed in the RDB, its CRC64 zeroed, the sha256 recomputed). Only a key the
    store does not hold tells a backup this deployment made from one rewritten since (issue 16 row 11)."""
    import hashlib
    import hmac
    import json

    body = json.dumps(dict((k, v) for k, v in metadata.items() if k != "hmac"), sort_keys=True,
                      separators=(",", ":"), default=str).encode("utf-8")
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def hmac_problem(metadata, key):
    """None when key is empty (nothing to check) or the metadata carries its HMAC under key; else why not."""
    import hmac

    if not key:
        return None
    found = metadata.get("hmac")
    if not found:
        return ("backup %s carries no HMAC: it was made without the key, or its HMAC was removed (hmac_key, the "
                "inventory's redis_backup_hmac_key)" % metadata.get("id"))
    if not hmac.compare_digest(str(found), metadata_hmac(metadata, key)):
        return ("backup %s's metadata does not match its HMAC: it was changed since it was made, or made with "
                "another key (hmac_key, the inventory's redis_backup_hmac_key)" % metadata.get("id"))
    return None


def check_failure_reason(lines, returncode):
    """Why redis-check-rdb failed, in its own words: the lines after `--- RDB ERROR DETECTED ---` up to its
    counters ([info]), without their [offset N] / [additional info] prefixes and the C source location."""
    try:
        start = next(i for i, line in enumerate(lines) if "RDB ERROR DETECTED" in line) + 1
    except StopIteration:
        return "exit %s without its verdict; its output ends: %s" % (returncode, " / ".join(lines[-3:]) or "(none)")
    said = []
    for line in lines[start:]:
        if line.startswith("[info]"):
            break
        text = re.sub(r"^\[(offset \d+|additional info)\]\s*", "", line.strip())
        said.append(re.sub(r"^Internal error in RDB reading .*?->\s*", "", text))
    return "; ".join(said) or "RDB error detected (no detail given)"


# ---------------------------------------------------------------- retention (pure)


def _age_key(metadata):
    return (metadata.get("lastsave") or 0, metadata.get("created_at") or "", metadata.get("id") or "")


def retention_plan(backups, now, keep_count=None, max_age=None):
    """Which backups to delete: beyond the newest keep_count, or older than max_age seconds (by their save
    time). The newest verified backup is never deleted, whatever the rules say. Returns ids, oldest first."""
    ordered = sorted(backups, key=_age_key)
    verified = [b for b in ordered if b.get("verified")]
    protected = verified[-1]["id"] if verified else None
    doomed = []
    for index, backup in enumerate(ordered):
        newer = len(ordered) - index - 1
        too_many = keep_count is not None and newer >= keep_count
        too_old = max_age is not None and now - (backup.get("lastsave") or 0) > max_age
        if (too_many or too_old) and backup["id"] != protected:
            doomed.append(backup["id"])
    return doomed


# ---------------------------------------------------------------- choosing a store


def store_argument_spec():
    """The options that name a store, shared by redis_backup and redis_restore: a directory, or S3."""
    return dict(
        store_dir=dict(type="path"),
        s3_bucket=dict(type="str"),
        s3_prefix=dict(type="str", default=""),
        s3_endpoint_url=dict(type="str"),
        s3_region=dict(type="str"),
        s3_access_key=dict(type="str", no_log=True),
        s3_secret_key=dict(type="str", no_log=True),
        s3_session_token=dict(type="str", no_log=True),
        s3_sse=dict(type="str", choices=["AES256", "aws:kms"]),
        s3_sse_kms_key_id=dict(type="str", no_log=False),
        staging_dir=dict(type="path"),
    )


STORE_MUTUALLY_EXCLUSIVE = [["store_dir", "s3_bucket"]]
STORE_REQUIRED_ONE_OF = [["store_dir", "s3_bucket"]]


def store_from(params):
    """The store the parameters name: DirectoryStore (store_dir) or S3Store (s3_bucket)."""
    if params.get("s3_bucket"):
        return S3Store(params)
    if not params.get("store_dir"):
        raise RedisError("no store: set store_dir (a directory on the Redis host) or s3_bucket")
    return DirectoryStore(params["store_dir"])


# ---------------------------------------------------------------- S3


S3_DENIED = ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
             "ExpiredToken", "InvalidToken")
S3_MISSING_BUCKET = ("NoSuchBucket", "404", "NotFound")


class S3Store(object):
    """Backups as objects `<prefix><id>.rdb` and `<prefix><id>.json` in one S3 bucket (boto3, imported on use).

    The RDB is staged in a local temp file (copied atomically, sha256 taken while copying), redis-check-rdb runs on
    that copy, then it is uploaded with its SHA-256 checksum, which S3 verifies: the object stored is exactly the
    bytes checked. The metadata is written last (a backup exists when its metadata does) and deleted first.
    """

    kind = "s3"

    def __init__(self, params):
        self.bucket = params["s3_bucket"]
        prefix = params.get("s3_prefix") or ""
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.endpoint_url = params.get("s3_endpoint_url") or None
        self.region = params.get("s3_region") or None
        self.credentials = dict(aws_access_key_id=params.get("s3_access_key") or None,
                                aws_secret_access_key=params.get("s3_secret_key") or None,
                                aws_session_token=params.get("s3_session_token") or None)
        self.sse = params.get("s3_sse") or None
        self.sse_kms_key_id = params.get("s3_sse_kms_key_id") or None
        self.staging_dir = params.get("staging_dir") or None
        self.path = "s3://%s/%s" % (self.bucket, self.prefix)
        self._client = None

    # -- names
    def key(self, name):
        return self.prefix + name

    def rdb_path(self, backup_id):
        return self.path + backup_id + ".rdb"

    def metadata_path(self, backup_id):
        return self.path + backup_id + ".json"

    # -- boto3, and its errors said once
    def client(self):
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as exc:
                raise RedisError(boto3_missing("an S3 store (s3_bucket)", exc)) from None
            config = Config(retries=dict(max_attempts=2, mode="standard"), connect_timeout=10, read_timeout=60)
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config,
                                        **dict((k, v) for k, v in self.credentials.items() if v))
        return self._client

    def _call(self, what, name, *args, **kwargs):
        """client.<name>(...) with boto errors turned into one sentence: what failed, where, the parameter."""
        try:
            return getattr(self.client(), name)(*args, **kwargs)
        except RedisError:
            raise
        except Exception as exc:
            raise self._error(what, exc) from None

    def _error(self, what, exc):
        code, message = _s3_code(exc)
        where = "s3://%s/%s" % (self.bucket, self.prefix)
        if code in S3_MISSING_BUCKET and "bucket" in (message or code).lower() or code == "NoSuchBucket":
            return RedisError("the bucket %s does not exist at %s (%s): create it or set s3_bucket"
                              % (self.bucket, self.endpoint_url or "AWS", what))
        if code in S3_DENIED:
            return RedisError("access denied to %s while %s (%s %s): the credentials (s3_access_key, s3_secret_key, "
                              "or the environment's) or the bucket's policy do not allow it"
                              % (where, what, code, message or ""))
        if code is None:
            return RedisError("cannot reach the S3 store %s while %s: %s (s3_endpoint_url, s3_region)"
                              % (where, what, exc))
        return RedisError("S3 error while %s at %s: %s %s" % (what, where, code, message or ""))

    # -- the store interface (as DirectoryStore)
    def check_writable(self, create):
        """The bucket exists and answers (create=False, check mode); create=True also writes and deletes a probe."""
        self._call("looking at the bucket", "head_bucket", Bucket=self.bucket)
        if create:
            probe = self.key(".write-probe")
            self._call("writing a probe object", "put_object", Bucket=self.bucket, Key=probe, Body=b"",
                       **self._sse_args())
            self._call("deleting the probe object", "delete_object", Bucket=self.bucket, Key=probe)

    def read(self, backup_id):
        import json as _json

        try:
            body = self.client().get_object(Bucket=self.bucket, Key=self.key(backup_id + ".json"))["Body"].read()
        except Exception as exc:
            code, _message = _s3_code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._error("reading the metadata of backup %s" % backup_id, exc) from None
        try:
            data = _json.loads(body.decode("utf-8"))
        except ValueError:
            return None
        return data if isinstance(data, dict) and data.get("format") == METADATA_FORMAT else None

    def list(self):
        found = []
        token = None
        while True:
            args = dict(Bucket=self.bucket, Prefix=self.prefix)
            if token:
                args["ContinuationToken"] = token
            page = self._call("listing the backups", "list_objects_v2", **args)
            for item in page.get("Contents") or []:
                name = item["Key"][len(self.prefix):]
                if name.endswith(".json") and "/" not in name and not name.startswith("."):
                    data = self.read(name[:-len(".json")])
                    if data is not None and data.get("id") == name[:-len(".json")]:
                        found.append(data)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        return sorted(found, key=_age_key)

    def write_metadata(self, metadata):
        import json as _json

        body = (_json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode("utf-8")
        self._call("writing the metadata of backup %s" % metadata["id"], "put_object", Bucket=self.bucket,
                   Key=self.key(metadata["id"] + ".json"), Body=body, ContentType="application/json",
                   ChecksumAlgorithm="SHA256", **self._sse_args())

    def delete(self, backup_id):
        for name in (backup_id + ".json", backup_id + ".rdb"):
            self._call("deleting backup %s" % backup_id, "delete_object", Bucket=self.bucket, Key=self.key(name))

    def put_rdb(self, source, backup_id, check):
        """Stage, check, upload with its SHA-256 (verified by S3). Returns (size, sha256, check result, durations)."""
        import base64
        import shutil

        began = time.monotonic()
        folder = tempfile.mkdtemp(prefix="erlmcp-dr-stage-", dir=self.staging_dir)
        try:
            staged = os.path.join(folder, backup_id + ".rdb")
            size, digest = copy_atomic(source, staged)
            copied = time.monotonic()
            result = check(staged)
            checked = time.monotonic()
            with open(staged, "rb") as body:  # botocore sends the SHA-256 of these bytes; S3 checks it
                sent = self._call("uploading backup %s" % backup_id, "put_object", Bucket=self.bucket,
                                  Key=self.key(backup_id + ".rdb"), Body=body, ContentLength=size,
                                  ChecksumAlgorithm="SHA256", **self._sse_args())
            stored = sent.get("ChecksumSHA256")
            if stored and base64.b64decode(stored).hex() != digest:
                raise RedisError("S3 stored backup %s with SHA-256 %s, the checked copy has %s: not marked verified"
                                 % (backup_id, base64.b64decode(stored).hex(), digest))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        durations = dict(copy=round(copied - began, 3), check=round(checked - copied, 3),
                         upload=round(time.monotonic() - checked, 3))
        return size, digest, result, durations

    def stored_sha256(self, backup_id):
        """The SHA-256 S3 keeps for the stored RDB (hex), or None when it has none or the object is missing."""
        import base64

        try:
            head = self.client().head_object(Bucket=self.bucket, Key=self.key(backup_id + ".rdb"),
                                             ChecksumMode="ENABLED")
        except Exception as exc:
            code, _message = _s3_code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._error("reading backup %s" % backup_id, exc) from None
        value = head.get("ChecksumSHA256")
        if value and "-" not in value:
            return base64.b64decode(value).hex()
        # No whole-object checksum kept (a multipart upload, another tool, a store without checksums): read it.
        body = self._call("reading backup %s" % backup_id, "get_object", Bucket=self.bucket,
                          Key=self.key(backup_id + ".rdb"))["Body"]
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(CHUNK), b""):
            digest.update(chunk)
        return digest.hexdigest()

    def local_rdb(self, metadata, staging):
        """Download the backup into `staging` (a local folder), checking its sha256 against the metadata."""
        backup_id = metadata["id"]
        path = os.path.join(staging, backup_id + ".rdb")
        response = self._call("downloading backup %s" % backup_id, "get_object", Bucket=self.bucket,
                              Key=self.key(backup_id + ".rdb"))
        digest = hashlib.sha256()
        with open(path, "wb") as out:
            os.chmod(path, 0o600)
            for chunk in iter(lambda: response["Body"].read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != metadata.get("sha256"):
            raise RedisError("backup %s is damaged: the sha256 of %s is %s, its metadata says %s; nothing was touched "
                             "(backup)" % (backup_id, self.rdb_path(backup_id), digest.hexdigest(),
                                           metadata.get("sha256")))
        return path

    def _sse_args(self):
        if not self.sse:
            return {}
        args = dict(ServerSideEncryption=self.sse)
        if self.sse == "aws:kms" and self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args


def _s3_code(exc):
    """(error code, message) of a botocore ClientError; (None, None) for anything else (endpoint unreachable...)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None, None
    error = response.get("Error") or {}
    return str(error.get("Code")) if error.get("Code") is not None else None, error.get("Message")
