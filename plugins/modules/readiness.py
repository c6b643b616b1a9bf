#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: readiness
short_description: Can we fail over right now? Every readiness check at once, each with its verdict
version_added: "0.1.0"
description:
  - Runs every check concurrently (one thread per probe) and returns one row per check - its measured value, unit,
    threshold, where the threshold comes from (the tier, the inventory or a seed line), the verdict (C(pass),
    C(warn) or C(fail)) and a detail - and an overall RV(verdict) (C(ready), C(warnings), C(not_ready)).
  - Checks - PostgreSQL standby replay lag in bytes and seconds, idle-aware (0 when the standby replayed the
    primary's current LSN); streaming standbys per target region; Redis replica links and offsets; the newest
    verified Redis backup's age; PostgreSQL backup and WAL archive age (a warning until pgBackRest is configured);
    the DNS TTL at every authoritative server and whether they agree; the DNS update credentials (a signed UPDATE
    whose prerequisite cannot match, so nothing changes); each region's app, database and Redis reachable; the
    target regions' capacity against the load; public endpoints' certificate expiry; the last drill per kind; the
    data-residency verdict per target (a warning until configured); the lock store (its folder writable, or every
    etcd member answering); the contacts' review age.
  - Read-only - nothing is changed anywhere; RV(ignore:changed) is always false and check mode runs the same.
  - Thresholds are O(thresholds) (the inventory's C(dr_readiness)) over the defaults docs/readiness.md lists.
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  postgres_nodes:
    description: The PostgreSQL nodes (name, host, port, region).
    type: list
    elements: dict
    default: []
  pg_login_user:
    description: The role to log in as.
    type: str
    default: postgres
  pg_login_password:
    description: Its password. Never logged, never returned.
    type: str
  pg_login_db:
    description: Database to connect to.
    type: str
    default: postgres
  redis_nodes:
    description: The Redis nodes (name, host, port, region).
    type: list
    elements: dict
    default: []
  redis_password:
    description: Redis's password. Never logged, never returned.
    type: str
  redis_backup_dir:
    description:
      - The redis_backup directory store (its catalog) whose newest verified backup is judged.
      - The newest verified backups' stored files are hashed, newest first, until one still has the sha256 its
        metadata records (at most 3 files); a newer one that does not fails the check, and the age reported is the
        newest backup that verifies.
    type: path
  apps:
    description: The application instances (name, url, region); C(<url>/health) is sampled once.
    type: list
    elements: dict
    default: []
  target_regions:
    description: The regions a failover could move to (every region but the primary's).
    type: list
    elements: str
    default: []
  dns:
    description:
      - The DNS settings - zone, provider, records (list), servers (list of name, host, port, role),
        tsig_key_name, tsig_algorithm, hosted_zone_id, endpoint_url, aws_region (the secret is O(dns_tsig_key_secret)).
    type: dict
    default: {}
  dns_tsig_key_secret:
    description: The TSIG key's secret (base64). Never logged, never returned.
    type: str
  public_endpoints:
    description: The https URLs whose certificates must stay valid for O(thresholds) C(cert_days) days.
    type: list
    elements: str
    default: []
  capacity:
    description: C(regions) (region to capacity) and C(load) (the current load, in the same units).
    type: dict
    default: {}
  drill_history:
    description: The drill history file (JSON lines, docs/readiness.md).
    type: path
  lock_store:
    description:
      - Where the run lock lives (the inventory's C(dr_lock_store)); unset, the store erlmcp.dr.run_lock would pick
        (C(ERLMCP_DR_LOCK_STORE), else C(directory)).
      - With C(etcd), every member of O(lock_etcd.endpoints) is asked at once, through the run lock's own client, for a
        linearizable read of the lock prefix - C(pass) when every member answers, C(warn) naming the members that do
        not when a quorum still does, C(fail) with a detail starting C(automation unavailable:) when no quorum
        answers or the login or TLS is refused. Never the directory store instead.
    type: str
    choices: [directory, etcd]
  lock_dir:
    description: The directory lock store's folder (default as erlmcp.dr.run_lock's).
    type: path
  lock_etcd:
    description:
      - The etcd lock store's settings, each the inventory's C(dr_lock_etcd_<name>) that erlmcp.dr.run_lock reads
        (docs/design.md, the run lock); used when O(lock_store) is C(etcd). The password is O(lock_etcd_password).
    type: dict
    default: {}
    suboptions:
      endpoints:
        description: Every member's client URL (C(dr_lock_etcd_endpoints)); unset, C(ERLMCP_DR_LOCK_ETCD_ENDPOINTS).
        type: list
        elements: str
      ca_file:
        description: The CA that signed the members' certificates (C(dr_lock_etcd_ca_file)).
        type: path
      cert_file:
        description: The client certificate (C(dr_lock_etcd_cert_file)), with O(lock_etcd.key_file).
        type: path
      key_file:
        description: The client certificate's key (C(dr_lock_etcd_key_file)).
        type: path
      user:
        description: The etcd user (C(dr_lock_etcd_user)), with O(lock_etcd_password).
        type: str
      prefix:
        description: The run locks' key prefix (C(dr_lock_etcd_prefix), default C(/erlmcp-dr/locks/)).
        type: str
      timeout:
        description:
          - Seconds one request to one member may take (C(dr_lock_etcd_timeout), default 3), checked as the run lock
            checks it (0.1 to 60).
        type: raw
  lock_etcd_password:
    description: The etcd user's password (C(dr_lock_etcd_password), keep it in vault). Never logged, never returned.
    type: str
  contacts_reviewed_at:
    description: When the contacts and escalation data were last reviewed (ISO 8601 date).
    type: str
  thresholds:
    description: Threshold overrides by name (docs/readiness.md); unknown names are refused.
    type: dict
    default: {}
  pg_backup:
    description:
      - The pgBackRest stanza whose newest usable backup's age is checked (C(stanza), C(config), and a database node's
        C(pg_data_dir), whose owner runs C(pgbackrest info)); the WAL archive's age comes from the primary's
        C(pg_stat_archiver); the age of the last restore proven by C(erlmcp.dr.pg_restore_verify) comes from its
        record (C(verified_restore_record), default C(<stanza>.verified-restore.json) beside C(config)).
      - Empty (no stanza) makes the three checks warnings, "not configured".
    type: dict
    default: {}
  tier_objectives:
    description:
      - The inventory's C(dr_tier_objectives), overriding the BIA table's tier objectives (those of the
        C(erlmcp.dr.tier_objectives) filter); the RPO and RTO thresholds are tier 1's unless C(thresholds) sets them.
    type: dict
    default: {}
  residency:
    description:
      - The residency guard's data - C(regions), C(datasets) and C(rules), from the inventory's C(dr_regions),
        C(dr_datasets) and C(dr_residency_rules). Each target region is judged as the regional failover would judge
        it.
      - Empty makes the residency checks warnings, "not configured".
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
requirements:
  - psycopg >= 3, redis (redis-py), dnspython, cryptography on the controller
"""

EXAMPLES = r"""
- name: Can we fail over right now?
  erlmcp.dr.readiness:
    postgres_nodes:
      - {name: pg-a, host: 10.0.1.10, port: 5432, region: a}
      - {name: pg-b, host: 10.0.2.10, port: 5432, region: b}
    pg_login_user: erlmcp_dr
    pg_login_password: "{{ vault_pg_password }}"
    target_regions: [b]
    thresholds: {rpo_seconds: 1, dns_ttl_seconds: 30}
  register: readiness
"""

RETURN = r"""
verdict:
  description: C(ready) (every check passed), C(warnings) (none failed, some warned) or C(not_ready).
  returned: always
  type: str
exit_code:
  description: 0, 1 or 2 for the three verdicts (what C(runbook readiness) exits with).
  returned: always
  type: int
checks:
  description: One row per check.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check and what it is about (C(pg_replay_lag pg-b)).
      type: str
    measured:
      description: What was measured; null when nothing could be.
      type: raw
    unit:
      description: Its unit.
      type: str
    threshold:
      description: The threshold it is judged against.
      type: raw
    source:
      description: Where the threshold comes from (tier, inventory dr_readiness, seed line).
      type: str
    verdict:
      description: C(pass), C(warn) or C(fail).
      type: str
    detail:
      description: Why, in words.
      type: str
counts:
  description: How many checks passed, warned and failed.
  returned: always
  type: dict
probe_seconds:
  description: Seconds each probe took (they run at once, so the slowest sets RV(elapsed)).
  returned: always
  type: dict
elapsed:
  description: Seconds all the checks took together.
  returned: always
  type: float
checked_at:
  description: When the checks started (UTC, ISO 8601).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._region.readiness import run  # noqa: E402


def argument_spec():
    return dict(
        postgres_nodes=dict(type="list", elements="dict", default=[]),
        pg_login_user=dict(type="str", default="postgres"),
        pg_login_password=dict(type="str", no_log=True),
        pg_login_db=dict(type="str", default="postgres"),
        redis_nodes=dict(type="list", elements="dict", default=[]),
        redis_password=dict(type="str", no_log=True),
        redis_backup_dir=dict(type="path"),
        apps=dict(type="list", elements="dict", default=[]),
        target_regions=dict(type="list", elements="str", default=[]),
        dns=dict(type="dict", default={}),
        dns_tsig_key_secret=dict(type="str", no_log=True),
        public_endpoints=dict(type="list", elements="str", default=[]),
        capacity=dict(type="dict", default={}),
        drill_history=dict(type="path"),
        lock_store=dict(type="str", choices=["directory", "etcd"]),
        lock_dir=dict(type="path"),
        lock_etcd=dict(type="dict", default={}, options=dict(
            endpoints=dict(type="list", elements="str"), ca_file=dict(type="path"), cert_file=dict(type="path"),
            key_file=dict(type="path"), user=dict(type="str"), prefix=dict(type="str"), timeout=dict(type="raw"))),
        lock_etcd_password=dict(type="str", no_log=True),
        contacts_reviewed_at=dict(type="str"),
        thresholds=dict(type="dict", default={}),
        pg_backup=dict(type="dict", default={}),
        residency=dict(type="dict", default={}),
        tier_objectives=dict(type="dict", default={}),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    execute(module, run, needs=POSTGRES)


if __name__ == "__main__":
    main()
