#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_backup
short_description: A verified backup of a Redis server's dataset (BGSAVE, atomic copy, sha256, redis-check-rdb)
version_added: "0.1.0"
description:
  - Asks the server for a BGSAVE (after any save already running, and once its clock is past the last save) and
    waits, polling every O(poll_interval) up to O(bgsave_timeout), until C(rdb_bgsave_in_progress:0),
    C(rdb_last_bgsave_status:ok) and C(rdb_saves) and C(LASTSAVE) advanced.
  - Copies the server's RDB file to the store through a temp file and a rename (0600, fsynced), computing its
    sha256 while copying; then runs C(redis-check-rdb) on the stored copy. Only a copy that passes is marked
    C(verified) in its metadata JSON, written atomically beside it (C(<store_dir>/<backup_id>.json)) - id, source
    node, save time, Redis and RDB versions, keys per database, size, sha256, replication id and offset, verified.
  - Retention (O(retention_count), O(retention_max_age)) deletes older backups after a verified one was made,
    and never deletes the newest verified backup.
  - Must run on the Redis host (it reads the server's RDB file from C(CONFIG GET dir), unless O(rdb_path) says
    where it is seen from here); the store is a directory on that host.
  - Preconditions (parameters, the store writable, the server answering and not loading, its RDB file visible)
    are checked before the BGSAVE. Check mode checks them and reports what would be done, touching nothing (no
    BGSAVE, no file).
  - With O(backup_id) naming a backup the store holds already, verified and with its sha256 intact, nothing is
    done (RV(ignore:changed) false); the id names the end state.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.redis
  - erlmcp.dr.redis.store
options:
  backup_id:
    description:
      - The backup's id (its files are C(<backup_id>.rdb) and C(<backup_id>.json)), 1-128 letters, digits, C(.),
        C(_) or C(-), starting with a letter or digit.
      - Default C(<node_name>-<UTC time to the microsecond>Z), a new backup on every run.
    type: str
  node_name:
    description:
      - The source node's name (the inventory host), recorded in the metadata and the default O(backup_id).
      - Default C(redis-<login_port>).
    type: str
  rdb_path:
    description:
      - Where the server's RDB file is seen from the host running the module; default C(CONFIG GET dir) joined
        with C(CONFIG GET dbfilename).
    type: path
  bgsave_timeout:
    description:
      - Seconds to wait for a BGSAVE already running, then for this one to finish.
    type: float
    default: 600
  poll_interval:
    description:
      - Seconds between two looks at the server's persistence state while waiting.
    type: float
    default: 0.2
  hmac_key:
    description:
      - A secret key (keep it in vault, not beside the store) - the metadata written beside the backup carries an
        HMAC-SHA256 under it (C(hmac)), and a backup found done by its id must carry it.
      - Without it nothing tells a backup this deployment made from one whose RDB and metadata were both rewritten
        in the store (a changed value, its CRC64 zeroed, the sha256 recomputed); RDB files saved without their
        checksum are refused either way.
    type: str
  check_rdb_path:
    description:
      - The C(redis-check-rdb) program (a name looked up in PATH, or a path).
    type: str
    default: redis-check-rdb
  check_timeout:
    description:
      - Seconds C(redis-check-rdb) gets to check the stored copy.
    type: float
    default: 600
  sample_size:
    description:
      - Keys per database (random, without a TTL) whose values are recorded as digests in the metadata
        (C(samples)), for M(erlmcp.dr.redis_restore) to compare after loading. Recorded only when they are exactly
        the file's (no write between the save and the end of the sampling); C(0) records none.
    type: int
    default: 20
  retention_count:
    description:
      - Keep at most this many backups in the store (the newest ones); omit to keep every backup.
      - The newest verified backup is kept whatever this says.
    type: int
  retention_max_age:
    description:
      - Delete backups saved more than this many seconds ago; omit to keep them whatever their age.
      - The newest verified backup is kept whatever this says.
    type: int
attributes:
  check_mode:
    support: full
    description: Checks the preconditions and reports the backup it would make and the backups retention would
      delete (RV(would_delete)); no BGSAVE, no file written or deleted.
  diff_mode:
    support: none
    description: A backup adds files; there is no value to show before and after.
notes:
  - The keys per database (RV(keys_per_db)) are read from INFO right after the save; RV(keys_exact) says whether the
    dataset was unchanged since the save then (C(rdb_changes_since_last_save:0)). RV(rdb_keys) is what
    C(redis-check-rdb) counted in the file itself.
"""

EXAMPLES = r"""
- name: Back up the Redis primary to a directory on its host, keeping the last 7 backups and at most 30 days
  erlmcp.dr.redis_backup:
    login_port: "{{ redis_port }}"
    login_password: "{{ redis_password }}"
    node_name: "{{ inventory_hostname }}"
    store_dir: /var/backups/redis
    retention_count: 7
    retention_max_age: "{{ 30 * 86400 }}"
  register: backup

- name: The same backup again, by id (changes nothing once it exists and is verified)
  erlmcp.dr.redis_backup:
    login_password: "{{ redis_password }}"
    store_dir: /var/backups/redis
    backup_id: nightly-2026-11-25
"""

RETURN = r"""
backup_id:
  description: The backup's id.
  returned: always
  type: str
  sample: redis-a-20261125T120102123456Z
store_dir:
  description: The store's directory (absolute).
  returned: always
  type: str
path:
  description: The stored RDB copy.
  returned: always
  type: str
metadata_path:
  description: The backup's metadata JSON beside it.
  returned: always
  type: str
source_path:
  description: The server's RDB file that would be copied.
  returned: in check mode
  type: str
verified:
  description: Whether the stored copy passed redis-check-rdb (and its sha256 was taken from the bytes stored).
  returned: always
  type: bool
sha256:
  description: The stored copy's sha256 (hex).
  returned: when a backup was made or found
  type: str
size:
  description: The stored copy's size in bytes.
  returned: when a backup was made or found
  type: int
rdb_version:
  description: The RDB format version in the file's header (Redis 7.0 writes 10).
  returned: when a backup was made or found
  type: int
redis_version:
  description: The version of the Redis that wrote the file.
  returned: when a backup was made or found
  type: str
keys_per_db:
  description: "Keys per database at the save, for example C({\"db0\": 1000})."
  returned: when a backup was made or found
  type: dict
keys_exact:
  description: Whether RV(keys_per_db) is exactly what the file holds (no write between the save and the count).
  returned: when a backup was made or found
  type: bool
rdb_keys:
  description: Keys in the file, as redis-check-rdb counted them (read minus already expired).
  returned: when a backup was made or found
  type: int
repl_offset:
  description: The replication offset the dataset was saved at (the file's C(repl-offset) field when it has one).
  returned: when a backup was made or found
  type: int
lastsave:
  description: The save's Unix time (C(LASTSAVE)); the backup's age is now minus this (the data a restore loses).
  returned: when a backup was made or found
  type: int
created_at:
  description: RV(lastsave) in ISO 8601 (UTC).
  returned: when a backup was made or found
  type: str
durations:
  description: Seconds spent in C(bgsave), C(copy), C(check) and C(total).
  returned: when a backup was made or found
  type: dict
metadata:
  description: The metadata JSON written beside the copy (no secret in it; C(samples) holds sampled key names
    and digests of their values, never the values).
  returned: when a backup was made or found
  type: dict
deleted:
  description: Ids of the backups retention deleted, oldest first.
  returned: always
  type: list
  elements: str
would_delete:
  description: Ids of the backups retention would delete, oldest first.
  returned: in check mode
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.client import connection_argument_spec, execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.store import (  # noqa: E402
    STORE_MUTUALLY_EXCLUSIVE,
    STORE_REQUIRED_ONE_OF,
    store_argument_spec,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.backup import run  # noqa: E402


def argument_spec():
    spec = connection_argument_spec()
    spec.update(store_argument_spec())
    spec.update(
        backup_id=dict(type="str"),
        node_name=dict(type="str"),
        rdb_path=dict(type="path"),
        bgsave_timeout=dict(type="float", default=600),
        poll_interval=dict(type="float", default=0.2),
        check_rdb_path=dict(type="str", default="redis-check-rdb"),
        hmac_key=dict(type="str", no_log=True),
        check_timeout=dict(type="float", default=600),
        sample_size=dict(type="int", default=20),
        retention_count=dict(type="int"),
        retention_max_age=dict(type="int"),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=STORE_MUTUALLY_EXCLUSIVE, required_one_of=STORE_REQUIRED_ONE_OF)
    execute(module, run)


if __name__ == "__main__":
    main()
