# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of pg_restore_verify: the scheduled proof that the newest backup restores (docs/pitr.md).

A backup nobody restored is a hope, not a backup (pg_verifybackup's own advice: "you should still perform test
restores"). This engine restores the newest backup with the WAL archive to its end (target latest) into a scratch
instance through pg_restore's engine (the same checks before anything is written: backup choice, every WAL segment
in the archive, a live data directory refused), then runs the inventory's checks on it - each a read-only query
returning one number (a row count) that must be at least its `min` - and only when every check holds, writes the
verified-restore record readiness reads (`pg_restore_verified_age`). A failed check leaves the previous record as
it was: the age keeps growing until a restore is proven again.

The record (JSON, default `<stanza>.verified-restore.json` beside the pgBackRest config, see record_path) holds
times, labels, LSNs and the checks' numbers, no secret: it is 0644 so that readiness, run by another user, reads it.

Private to the collection. Python 3.8 syntax at most: module_utils run on managed hosts.
"""

from __future__ import annotations

import datetime
import json
import os
import time

from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import restore
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import write_atomic
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import Server, data_dir_owner

RECORD_SUFFIX = ".verified-restore.json"
DEFAULT_CONFIG = "/etc/pgbackrest/pgbackrest.conf"  # pgBackRest's own default place
AFTER = ("removed", "stopped", "running")


def record_path(params):
    """Where the verified-restore record is: `record`, else beside the pgBackRest config, named by the stanza.
    readiness computes the same default from the same two settings (stanza, config)."""
    if params.get("record"):
        return os.path.abspath(params["record"])
    folder = os.path.dirname(os.path.abspath(params.get("config") or DEFAULT_CONFIG))
    return os.path.join(folder, params["stanza"] + RECORD_SUFFIX)


def read_record(path):
    """The record as written by run(), or None when there is none (no restore proven yet). A record that is not
    JSON is an error naming the file: readiness must not read garbage as "never verified"."""
    try:
        with open(path) as handle:
            text = handle.read()
    except (IOError, OSError):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        raise ModuleFailure("the verified-restore record %s is not JSON: remove it and run pg_restore_verify again"
                            % path) from None
    if not isinstance(record, dict) or not isinstance(record.get("verified_at"), (int, float)):
        raise ModuleFailure("the verified-restore record %s has no verified_at time: remove it and run "
                            "pg_restore_verify again" % path)
    return record


def run(params, check_mode=False, diff=False, warn=None):
    checks = parse_checks(params.get("checks") or [])
    after = params.get("after") or "removed"
    if after not in AFTER:
        raise ModuleFailure("after is %r: expected one of %s (after)" % (after, ", ".join(AFTER)))
    record = record_path(params)
    if not os.path.isdir(os.path.dirname(record)):
        raise ModuleFailure("the folder of the verified-restore record %s does not exist: expected the pgBackRest "
                            "config's folder or a folder you name (record)" % record)
    scratch = os.path.abspath(params["scratch_dir"])
    if not check_mode and restore.read_marker(scratch):
        # A scheduled proof restores anew each time: a scratch a previous run of ours left (proven or killed) goes.
        restore.clean(scratch, params)
    started = time.monotonic()
    restored = restore.run(dict(params, target_type="latest", target=None, backup_label=None, after="running",
                                check_query=None), check_mode=check_mode)
    facts = dict(restored, record=record, checks=[])
    if check_mode:
        facts["would_check"] = [c["name"] for c in checks]
        return facts
    try:
        facts["checks"] = run_checks(params, restored["proof"]["port"], checks)
    finally:
        _leave_scratch(scratch, params, after)
    facts["scratch_state"] = after
    failed = [c for c in facts["checks"] if not c["ok"]]
    if failed:
        raise ModuleFailure("backup %s restored and started, but %d check(s) failed: %s; the verified-restore record "
                            "%s was not updated (fix the data or the check: checks)"
                            % (restored["backup"]["label"], len(failed), "; ".join(c["detail"] for c in failed),
                               record), error_kind="check_failed", **facts)
    now = time.time()
    entry = dict(stanza=params["stanza"], repository=restored.get("repository"), label=restored["backup"]["label"],
                 backup_stopped_at=restored["backup"].get("stopped_at"), verified_at=now,
                 verified_at_iso=_iso(now), duration_seconds=round(time.monotonic() - started, 3),
                 last_xact_time=restored["proof"].get("last_xact_time"),
                 replay_lsn=restored["proof"].get("replay_lsn"), wal=restored.get("wal"),
                 checks=[dict((k, c[k]) for k in ("name", "value", "min", "ok")) for c in facts["checks"]])
    write_atomic(record, json.dumps(entry, sort_keys=True, default=str) + "\n", 0o644,
                 owner=data_dir_owner(params["pg_data_dir"]))
    facts.update(changed=True, verified=entry)
    return facts


def parse_checks(checks):
    """[{name, query, min, database}]: each a query returning one number that must be >= min (default 1). Bad
    entries are refused before anything is restored, naming the entry and what is expected."""
    parsed, names = [], set()
    for index, check in enumerate(checks):
        if not isinstance(check, dict) or not isinstance(check.get("query"), str) or not check["query"].strip():
            raise ModuleFailure("checks[%d] is %r: expected a mapping with a query returning one number, e.g. "
                                "{name: orders, query: 'SELECT count(*) FROM orders', min: 1} (checks)"
                                % (index, check))
        name = str(check.get("name") or "check %d" % (index + 1))
        if name in names:
            raise ModuleFailure("checks[%d]: the name %r is used twice; expected one name per check (checks)"
                                % (index, name))
        names.add(name)
        minimum = check.get("min", 1)
        if isinstance(minimum, bool) or not isinstance(minimum, (int, float)):
            raise ModuleFailure("checks[%d] (%s): min is %r; expected a number, the least value the query may "
                                "return (checks)" % (index, name, minimum))
        parsed.append(dict(name=name, query=check["query"], min=minimum, database=check.get("database")))
    return parsed


def run_checks(params, port, checks):
    """Each check on the scratch instance, in a read-only session: {name, value, min, ok, detail}."""
    results = []
    for check in checks:
        conn_params = dict(host="127.0.0.1", port=port, user=params["login_user"],
                           password=params.get("login_password"),
                           dbname=check["database"] or params.get("login_db") or "postgres", connect_timeout=5)
        value, error = _one_number(conn_params, check["query"])
        ok = error is None and value >= check["min"]
        if error is not None:
            detail = "%s: %s" % (check["name"], error)
        else:
            detail = "%s: %s (expected at least %s)" % (check["name"], value, check["min"])
        results.append(dict(name=check["name"], value=value, min=check["min"], ok=ok, detail=detail))
    return results


def _one_number(conn_params, query):
    conn, error = pg.try_connect(conn_params, "erlmcp.dr pg_restore_verify")
    if conn is None:
        return None, "cannot connect to the scratch instance: %s" % error
    try:
        # The checks read; the scratch is a proof, not a place to write.
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        row = conn.execute(query).fetchone()
    except Exception as exc:  # the query's own error is the operator's answer
        return None, "the query failed: %s" % str(exc).strip()
    finally:
        conn.close()
    values = list(row.values()) if row else []
    if len(values) != 1 or isinstance(values[0], bool) or not isinstance(values[0], (int, float)) \
            and not _is_decimal(values[0]):
        return None, "expected one row of one number, found %r" % (dict(row) if row else None,)
    return float(values[0]) if _is_decimal(values[0]) else values[0], None


def _is_decimal(value):
    return type(value).__name__ == "Decimal"


def _leave_scratch(scratch, params, after):
    if after == "removed":
        restore.clean(scratch, params)
    elif after == "stopped":
        Server(scratch, bin_dir=params.get("pg_bin_dir"), log_file=restore.log_file(scratch)).stop(
            timeout=params["start_timeout"])


def _iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()
