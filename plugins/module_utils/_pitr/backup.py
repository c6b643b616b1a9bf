# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of pg_backup: a full/diff/incr backup through the backup driver (_pgbackrest), verified after it is
taken, then retention (docs/pitr.md).

Preconditions before the backup: the stanza exists (info) and archiving works (check: a WAL switch reaches the
repository within archive_timeout); check mode stops after info and says what it would take and expire. A backup
that does not verify fails the run and retention does not run: older verified backups and their WAL stay.

Private to the collection. Python 3.8 syntax at most: module_utils run on managed hosts.
"""

from __future__ import annotations

import time

from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import plan
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.pgbackrest import BackupError, PgBackRest

BACKUP_TYPES = ("full", "diff", "incr")


def driver_for(params):
    """The backup driver the parameters name (only pgBackRest today: the one place a second one plugs in)."""
    return PgBackRest(params)


def run(params, check_mode=False, diff=False, warn=None):
    _validate(params)
    driver = driver_for(params)
    facts = dict(changed=False, repository=driver.describe(), backup_type=params["backup_type"], expired=[])
    before = plan.usable_backups(driver.info())
    if params["backup_type"] != "full" and not any(b["type"] == "full" for b in before):
        # pgBackRest would silently take a full instead: say so rather than report a type that was not taken.
        (warn or (lambda _m: None))("no full backup in %s yet: pgBackRest takes a full backup instead of %s"
                                    % (driver.describe(), params["backup_type"]))
    if check_mode:
        facts.update(changed=True, would_take=params["backup_type"],
                     would_expire=_would_expire(before, params, planned=True))
        return facts
    with _failing(facts):
        driver.check(params["archive_timeout"])
        started = time.monotonic()
        facts["changed"] = True
        backup = driver.backup(params["backup_type"])
        facts.update(describe_backup(backup), duration_seconds=round(time.monotonic() - started, 3))
        verified = driver.verify(backup["label"]) if params["verify"] else {"ok": None, "status": "not verified"}
    facts.update(verified=verified["ok"], verify_status=verified["status"], verify_line=verified.get("line"))
    if params["verify"] and not verified["ok"]:
        raise ModuleFailure("backup %s was taken but pgbackrest verify says %s (%s): it stays in the repository, is "
                            "never chosen as verified, and retention did not run"
                            % (backup["label"], verified["status"], verified.get("line") or verified["output"]),
                            error_kind="corrupt", **facts)
    if params.get("retention_full"):
        with _failing(facts):
            doomed = _would_expire(plan.usable_backups(driver.info()), params, verified_label=backup["label"])
            if doomed:
                driver.expire(params["retention_full"])
            after = set(b["label"] for b in plan.usable_backups(driver.info()))
        facts["expired"] = [b["label"] for b in before if b["label"] not in after]
    return facts


def _validate(params):
    if params["backup_type"] not in BACKUP_TYPES:
        raise ModuleFailure("backup_type is %r: expected one of %s (backup_type)"
                            % (params["backup_type"], ", ".join(BACKUP_TYPES)))
    if params.get("retention_full") is not None and params["retention_full"] < 1:
        raise ModuleFailure("retention_full is %s: expected 1 or more full backups to keep (leave it out to keep "
                            "every backup)" % params["retention_full"])
    if params["archive_timeout"] <= 0:
        raise ModuleFailure("archive_timeout is %s: expected seconds greater than 0 (archive_timeout)"
                            % params["archive_timeout"])


def _would_expire(backups, params, planned=False, verified_label=None):
    keep = params.get("retention_full")
    if not keep:
        return []
    if planned:  # the backup this run takes counts as the newest (verified, or retention does not run)
        backups = backups + [dict(label="(this run's backup)", type=params["backup_type"] if any(
            b["type"] == "full" for b in backups) else "full")]
        verified_label = "(this run's backup)"
    try:
        return plan.retention_plan(backups, keep, {verified_label} if verified_label else set())
    except plan.PlanError as exc:
        raise ModuleFailure(str(exc)) from None


def describe_backup(backup):
    """The summary's facts of one backup as pgBackRest's info records it."""
    info = backup.get("info") or {}
    return dict(label=backup["label"], type=backup["type"], prior=backup.get("prior"),
                lsn_start=backup["lsn"]["start"], lsn_stop=backup["lsn"]["stop"],
                wal_start=(backup.get("archive") or {}).get("start"),
                wal_stop=(backup.get("archive") or {}).get("stop"),
                started_at=backup["timestamp"]["start"], stopped_at=backup["timestamp"]["stop"],
                size=info.get("size"), repository_size=(info.get("repository") or {}).get("size"))


class _failing(object):
    """Driver errors end the run with the facts gathered so far (what was taken before the failure)."""

    def __init__(self, facts):
        self.facts = facts

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, BackupError):
            facts = dict(self.facts)
            facts.update(exc.facts)
            raise ModuleFailure(str(exc), **facts) from None
        return False
