#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_restore
short_description: Restore a verified backup into a Redis primary by the AOF-safe sequence, and prove it
version_added: "0.1.0"
description:
  - Chooses a backup of a directory store made by M(erlmcp.dr.redis_backup) - by id, the newest verified one
    (C(latest)), or the newest verified one saved before O(before) - and, before touching the server, checks that
    it was verified when made, that its stored copy still has its sha256, that the server can load its RDB version,
    and that C(redis-check-rdb) passes on it.
  - Then pauses writes (C(CLIENT PAUSE WRITE), O(pause_timeout)), turns AOF off and persists that
    (C(CONFIG SET appendonly no), C(CONFIG REWRITE)), stops the server with C(SHUTDOWN SAVE), moves its RDB file
    and AOF directory aside as the rollback point (C(<dir>/erlmcp-dr-rollback-<time>/)), copies the backup into
    place, starts the server with O(start_command) (as the owner of its data directory when run as root), waits for
    C(loading:0), checks the keys it loaded against the backup's metadata and its sampled values, turns AOF on again
    (C(CONFIG SET appendonly yes)), waits for the AOF rewrite and persists the config. The dataset then survives a
    restart with AOF on; an old AOF can never hide the restored RDB.
  - Waits until every replica that was online before is online again at the primary's offset.
  - If the loaded dataset does not match the backup's metadata, the rollback point is put back by the same
    sequence and the module fails saying so (RV(rolled_back)).
  - Running it again for the same backup on a server that holds that dataset, restored by this module and
    unchanged since (same server process), changes nothing.
  - Each restore keeps a journal (C(restore.json)) in its rollback folder. A restore cut off part-way (the module
    killed, O(start_command) failing) is finished by the next run before anything else - from where it stopped
    (RV(resumed_from)); when the server was left stopped, O(data_dir) tells the module where to look. The dataset
    ends as the backup's, or as the rollback point's when the backup does not verify, never empty. A run cut off
    while putting the rollback point back (C(rolling_back)) is finished the same way, and fails as the first would
    have (RV(rolled_back)).
  - One restore per data directory at a time (an flock on C(<dir>/.erlmcp-dr-restore.lock), released when the
    process ends); a second one while one runs fails before touching anything.
  - Must run on the Redis host (it moves the server's files).
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.redis
  - erlmcp.dr.redis.store
options:
  backup:
    description: The backup's id, or C(latest) for the newest verified one.
    type: str
    default: latest
  before:
    description:
      - With O(backup=latest), the newest verified backup saved before this time - a Unix time, or ISO 8601
        (C(2026-11-25T12:00:00Z); UTC when it names no zone).
    type: str
  start_command:
    description:
      - The command (argument list, no shell) that starts this redis-server with its config file, for example
        C([systemctl, start, redis-server]) or C([redis-server, /etc/redis/redis.conf]) when it daemonizes.
      - It runs as the owner of the server's data directory when the module runs as root.
    type: list
    elements: str
    required: true
  data_dir:
    description:
      - The server's data directory (its C(dir), the inventory's C(redis_data_dir)). Needed only to finish a
        restore that was cut off while the server was stopped (nothing answers to say where its files are).
    type: path
  pause_timeout:
    description: Seconds writes stay paused (C(CLIENT PAUSE WRITE)) while the server is stopped.
    type: float
    default: 30
  wait_timeout:
    description: Seconds each wait gets (the server to stop, to load, the AOF rewrite, the replicas).
    type: float
    default: 600
  poll_interval:
    description: Seconds between two looks while waiting.
    type: float
    default: 0.1
  hmac_key:
    description:
      - A secret key (keep it in vault, not beside the store) - the backup's metadata must carry its HMAC-SHA256
        under it (C(hmac)), else the restore is refused before anything is touched.
      - Without it nothing tells a backup this deployment made from one whose RDB and metadata were both rewritten
        in the store (a changed value, its CRC64 zeroed, the sha256 recomputed); RDB files saved without their
        checksum are refused either way.
    type: str
  check_rdb_path:
    description: The C(redis-check-rdb) program.
    type: str
    default: redis-check-rdb
  check_timeout:
    description: Seconds C(redis-check-rdb) gets.
    type: float
    default: 600
attributes:
  check_mode:
    support: full
    description: Chooses and verifies the backup and checks the server; touches nothing.
  diff_mode:
    support: none
    description: The change is a whole dataset; RV(keys_before) and RV(keys_after) say what changed.
"""

EXAMPLES = r"""
- name: Restore the newest verified backup into the Redis primary
  erlmcp.dr.redis_restore:
    login_port: "{{ redis_port }}"
    login_password: "{{ redis_password }}"
    store_dir: /var/backups/redis
    start_command: [systemctl, start, redis-server]
  register: restored
"""

RETURN = r"""
backup_id:
  description: The backup restored (or that would be).
  returned: when one was chosen
  type: str
backup:
  description: The backup's metadata.
  returned: when one was chosen
  type: dict
data_loss_seconds:
  description: The backup's age when restoring (now minus its save time), the writes a restore gives up.
  returned: when one was chosen
  type: int
keys_before:
  description: Keys per database before the restore.
  returned: when the server was reached
  type: dict
keys_after:
  description: Keys per database after the restore (or after the rollback).
  returned: when the server was restarted
  type: dict
rollback_dir:
  description: Where the dataset from before the restore was kept (its RDB file and AOF directory).
  returned: always
  type: str
resumed_from:
  description: The phase an unfinished restore was found in and finished from (C(stopping), C(set_aside),
    C(placed), C(started), C(rolling_back)); null when there was none.
  returned: always
  type: str
sampled_keys:
  description:
    - How many of the backup's sampled values were compared after loading; all must match.
    - See O(erlmcp.dr.redis_backup#module:sample_size).
  returned: when the backup was loaded
  type: int
rolled_back:
  description: Whether the restored dataset failed verification and the rollback point was put back.
  returned: always
  type: bool
replicas:
  description: The replicas online again at the primary's offset (host, port, state, offset, lag).
  returned: when restored
  type: list
  elements: dict
durations:
  description: Seconds spent in C(verify), C(stop), C(load), C(aof_rewrite), C(replicas) and C(total).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.client import connection_argument_spec, execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.store import (  # noqa: E402
    STORE_MUTUALLY_EXCLUSIVE,
    STORE_REQUIRED_ONE_OF,
    store_argument_spec,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.restore import run  # noqa: E402


def argument_spec():
    spec = connection_argument_spec()
    spec.update(store_argument_spec())
    spec.update(
        backup=dict(type="str", default="latest"),
        before=dict(type="str"),
        start_command=dict(type="list", elements="str", required=True),
        data_dir=dict(type="path"),
        pause_timeout=dict(type="float", default=30),
        wait_timeout=dict(type="float", default=600),
        poll_interval=dict(type="float", default=0.1),
        check_rdb_path=dict(type="str", default="redis-check-rdb"),
        hmac_key=dict(type="str", no_log=True),
        check_timeout=dict(type="float", default=600),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=STORE_MUTUALLY_EXCLUSIVE, required_one_of=STORE_REQUIRED_ONE_OF)
    execute(module, run)


if __name__ == "__main__":
    main()
