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

from ansible_collections.erlmcp.dr.plugins.module_utils._files import fsync_folder, write_atomic
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import RedisError

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


def parse_check_output(output, returncode):
    aux = dict(re.findall(r"AUX FIELD ([\w-]+) = '([^']*)'", output))
    found = re.findall(r"\[info\] (\d+) (keys read|expires|already expired)", output)
    numbers = dict((what, int(n)) for n, what in found)
    lines = [line for line in output.splitlines() if line.strip()]
    return dict(ok=returncode == 0 and "RDB looks OK" in output, returncode=returncode, output=lines[-12:],
                aux=aux, keys_read=numbers.get("keys read"), expires=numbers.get("expires"),
                already_expired=numbers.get("already expired"))


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
