"""pg_backup and pg_restore on a real lab: pgBackRest 2.45, real WAL archiving, real PostgreSQL 15 recovery.

One lab for the module (a copy of the session's template, its own repository): one backup through the pg_backup
runbook, then a writer that logs each acknowledged insert with its commit time. Restores to random target times
must hold every row committed at or before the target and none after (CI restores to a few; benchmarks/pitr.py
restores to many, results in benchmarks/results/). The refusals (a WAL gap, a live data directory, a stanza that
does not exist, a corrupt backup file, archiving broken) each give a clear error and change nothing; the ones that
break the repository work on a copy of it.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import moto_server
import pytest
from pitr_helpers import (
    PRIMARY,
    S3_UNAUTHENTICATED_SETUP,
    Writes,
    archive_files,
    archive_now,
    archive_through,
    backup_params,
    mismatches,
    repository_copy,
    restore,
    restore_params,
    restored_ids,
    s3_account,
    s3_config,
    scratch_dir,
    take_backup,
    tls_front,
    write_rows,
)
from runbook_helpers import (
    DEADLINE,
    inventory_path,
    lock_held,
    new_lab,
    node_state,
    run_json,
    runbook_cli,
    sql,
    summary,
    wait_for,
)

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import pgbackrest as lab_pgbackrest
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import plan  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import restore as _pitr_restore  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.backup import driver_for  # noqa: E402

pytestmark = pytest.mark.integration

# Random target times restored in CI (one through the runbook, one through its engine): each restore costs a
# pgBackRest restore and a recovery, and CI's budget is tight; benchmarks/pitr.py restores to 20 and more.
CI_TARGETS = 2
ROWS = 40


class PitrLab:
    def __init__(self, cfg: lab.LabConfig, backup_run: dict[str, Any], writes: Writes) -> None:
        self.cfg, self.backup_run, self.writes = cfg, backup_run, writes


@pytest.fixture(scope="module")
def pitr_lab(lab_template: lab.LabConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PitrLab]:
    with new_lab() as cfg:
        os.environ["ERLMCP_DR_HOME"] = str(tmp_path_factory.mktemp("pitr-home"))
        try:
            _cli, backup_run = run_json("run", "pg_backup", "-i", str(inventory_path(cfg)), "--yes", expect_rc=0)
            # pgBackRest records the backup's stop in whole seconds, so pg_restore only takes time targets from the
            # next second on (conservative: the real stop may be up to a second later). The rows the targets are
            # drawn from are written once that second has begun.
            stop = float(summary(backup_run)["backup"]["stopped_at"])
            wait_for(lambda: time.time() >= stop + 1, 5, interval=0.05, what="the second after the backup's stop")
            writes = write_rows(cfg, ROWS)
            archive_now(cfg)
            yield PitrLab(cfg, backup_run, writes)
        finally:
            os.environ.pop("ERLMCP_DR_HOME", None)


def _live(cfg: lab.LabConfig) -> dict[str, Any]:
    """What must not change on the live cluster: pg-a's role, timeline, postmaster pid and its rows."""
    state = node_state(cfg, PRIMARY)
    return {"role": state["role"], "timeline": state["timeline"],
            "pid": (cfg.node(PRIMARY).data_dir / "postmaster.pid").read_text().splitlines()[0],
            "rows": sql(cfg, PRIMARY, "SELECT count(*) AS n FROM pitr_rows")[0]["n"]}


def test_pg_backup_takes_a_verified_backup_and_reports_it(pitr_lab: PitrLab) -> None:
    found = summary(pitr_lab.backup_run)
    backup = found["backup"]
    assert found["completed"] and found["end_state"]["ok"], found
    assert backup["verified"] is True and backup["verify_status"] == "valid"
    assert backup["type"] == "full" and backup["label"].endswith("F")
    assert plan.parse_lsn(backup["lsn_start"]) < plan.parse_lsn(backup["lsn_stop"])
    assert backup["size"] > 0 and backup["duration_seconds"] > 0
    # Keyed apart from the cluster's lock (postgres:<id>) that the role-changing runbooks take: a backup never
    # turns a failover away as busy.
    assert found["lock"]["key"].startswith("postgres-backups:")
    info = driver_for({"stanza": lab_pgbackrest.STANZA, "config": str(lab_pgbackrest.config_path(pitr_lab.cfg.root)),
                       "pg_data_dir": str(pitr_lab.cfg.node(PRIMARY).data_dir)}).info()
    assert [b["label"] for b in plan.usable_backups(info)] == [backup["label"]]
    # The lab's config holds the repository's paths and a login: only its owner reads it.
    assert lab_pgbackrest.config_path(pitr_lab.cfg.root).stat().st_mode & 0o777 == 0o600


def test_restores_to_random_times_hold_exactly_the_rows_committed_by_then(pitr_lab: PitrLab) -> None:
    cfg, writes = pitr_lab.cfg, pitr_lab.writes
    targets = writes.random_targets(CI_TARGETS, random.Random(21))
    before = _live(cfg)
    found: dict[str, dict[str, list[int]]] = {}
    # The first through the runbook (the scratch's default place and port, removed once proven), the others
    # through its engine.
    _cli, result = run_json("run", "pg_restore", "-i", str(inventory_path(cfg)), "--yes",
                            "-e", "target_type=time", "-e", f"target={targets[0].isoformat()}",
                            "-e", "after=removed", "-e",
                            "check_query=SELECT coalesce(array_agg(id ORDER BY id), '{}') AS ids FROM pitr_rows",
                            expect_rc=0)
    restored = summary(result)["restore"]
    assert summary(result)["completed"] and restored["proof"]["paused"] is True
    found[targets[0].isoformat()] = mismatches(writes, targets[0], restored_ids(restored))
    for index, target in enumerate(targets[1:], start=1):
        outcome = restore(cfg, f"exact-{index}", target_type="time", target=target.isoformat(), after="removed")
        found[target.isoformat()] = mismatches(writes, target, restored_ids(outcome))
        last = max(at for _id, at in writes.committed if at <= target)
        assert outcome["proof"]["last_xact_time"] == last.isoformat(), "the proof names the last commit replayed"
    assert all(m == {"missing": [], "extra": []} for m in found.values()), found
    assert _live(cfg) == before


def test_a_restore_is_found_done_and_a_killed_one_is_cleaned(pitr_lab: PitrLab) -> None:
    cfg = pitr_lab.cfg
    # The backup's own end: the earliest target it reaches (the rows' table does not exist yet there).
    lsn_target = summary(pitr_lab.backup_run)["backup"]["lsn_stop"]
    first = restore(cfg, "again", target_type="lsn", target=lsn_target, after="stopped", check_query=None)
    assert first["changed"] and first["proof"]["paused"] and first["proof"]["replay_lsn"]
    again = restore(cfg, "again", target_type="lsn", target=lsn_target, after="stopped", check_query=None)
    assert again["changed"] is False and again["found_done"] is True
    # A run killed mid-restore leaves its marker saying `restoring`: the next run cleans the scratch and restores
    # anew (check mode: it says so and touches nothing).
    marker = scratch_dir(cfg, "again").with_name("pitr-again.erlmcp-dr.json")
    marker.write_text(marker.read_text().replace('"proven"', '"restoring"'))
    planned = _pitr_restore.run(restore_params(cfg, "again", target_type="lsn", target=lsn_target, check_query=None),
                                check_mode=True)
    assert planned["changed"] and planned["cleaned_leftover"] and scratch_dir(cfg, "again").is_dir()


# A restore run in a process of its own, to be killed with SIGKILL (the whole process group: pgbackrest with it).
_RESTORE_IN_A_PROCESS = """
import json, sys
from erlmcp_dr.paths import ensure_collection_importable
ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import restore as _pitr_restore
_pitr_restore.run(json.load(open(sys.argv[1])))
"""


def test_a_restore_killed_with_sigkill_is_cleaned_and_redone_by_the_next_run(
        pitr_lab: PitrLab, tmp_path: Path) -> None:
    cfg = pitr_lab.cfg
    params = restore_params(cfg, "killed", check_query=None, after="stopped")
    scratch = scratch_dir(cfg, "killed")
    marker = scratch.with_name(scratch.name + ".erlmcp-dr.json")
    (tmp_path / "params.json").write_text(json.dumps(params))
    victim = subprocess.Popen([sys.executable, "-c", _RESTORE_IN_A_PROCESS, str(tmp_path / "params.json")],
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Mid-restore: its marker says restoring and pgBackRest has begun writing the scratch directory.
        wait_for(lambda: (marker.exists() and '"restoring"' in marker.read_text() and scratch.is_dir()
                          and any(scratch.iterdir())) or victim.poll() is not None, DEADLINE, interval=0.02,
                 what="the restore to begin writing its scratch directory")
        assert victim.poll() is None, "the restore ended before it could be killed"
        os.killpg(victim.pid, signal.SIGKILL)
    finally:
        victim.wait(timeout=DEADLINE)
    assert victim.returncode == -signal.SIGKILL and '"restoring"' in marker.read_text()
    # The next run of the same restore finds what the killed one left, stops what runs there, removes it and
    # restores anew, to the end, proven.
    again = restore(cfg, "killed", check_query=None, after="stopped")
    assert again["changed"] and again["cleaned_leftover"] and again["proof"]["replay_lsn"]
    assert '"proven"' in marker.read_text() and not (scratch / "postmaster.pid").exists()
    _pitr_restore.clean(str(scratch), params)


def test_a_second_operator_is_turned_away_busy_while_the_backups_lock_is_held(
        pitr_lab: PitrLab, tmp_path: Path) -> None:
    cfg = pitr_lab.cfg
    key = summary(pitr_lab.backup_run)["lock"]["key"]
    scratches = sorted(p.name for p in (cfg.root / "pg").glob("pitr-*"))
    with lock_held(cfg, key, "the-other-operator", tmp_path):
        cli = runbook_cli("run", "pg_restore_verify", "-i", str(inventory_path(cfg)), "--yes")
    assert cli.rc == 3 and "the-other-operator" in str(cli), cli  # busy, naming who holds it
    assert sorted(p.name for p in (cfg.root / "pg").glob("pitr-*")) == scratches, "nothing restored"


def test_a_missing_wal_segment_is_refused_before_any_change_naming_it(pitr_lab: PitrLab) -> None:
    cfg, writes = pitr_lab.cfg, pitr_lab.writes
    config = repository_copy(cfg, "gap")
    target = writes.committed[-2][1].isoformat()
    backup_start = summary(pitr_lab.backup_run)["backup"]["wal_start"]
    needed = [p for p in archive_files(config) if p.name[:24] > backup_start]
    assert len(needed) >= 2, needed
    refused = 0
    for segment in needed[:-1]:  # each one missing in turn (the others put back)
        hidden = segment.with_name(segment.name + ".hidden")
        segment.rename(hidden)
        try:
            with pytest.raises(ModuleFailure, match=f"lacks segment {segment.name[:24]}") as failure:
                restore(cfg, "gap", config=str(config), target_type="time", target=target)
        finally:
            hidden.rename(segment)
        assert failure.value.kind == "wal_gap" and failure.value.facts["missing_segment"] == segment.name[:24]
        assert not scratch_dir(cfg, "gap").exists(), "nothing is written before the WAL is checked"
        refused += 1
    assert refused == len(needed) - 1


def test_a_target_before_the_oldest_backup_is_refused_naming_it(pitr_lab: PitrLab) -> None:
    cfg = pitr_lab.cfg
    backup = summary(pitr_lab.backup_run)["backup"]
    before = datetime.datetime.fromtimestamp(float(backup["started_at"]) - 60, datetime.UTC)
    with pytest.raises(ModuleFailure, match=f"lies before the oldest backup's end, {backup['label']}") as failure:
        restore(cfg, "too-early", target_type="time", target=before.isoformat())
    assert failure.value.kind == "no_backup" and "choose a later target" in str(failure.value)
    assert not scratch_dir(cfg, "too-early").exists()


@pytest.mark.parametrize("where", ["the data directory", "inside it"])
def test_a_restore_into_a_live_data_directory_is_refused(pitr_lab: PitrLab, where: str) -> None:
    cfg = pitr_lab.cfg
    live = cfg.node("pg-b").data_dir
    target = live if where == "the data directory" else live / "restored"
    before = sorted(os.listdir(live))
    with pytest.raises(ModuleFailure, match="live data directory") as failure:
        restore(cfg, "unused", scratch_dir=str(target))
    assert failure.value.kind == "refused_target"
    assert sorted(os.listdir(live)) == before and not target.with_name(target.name + ".erlmcp-dr.json").exists()


def test_a_stanza_that_does_not_exist_is_a_clear_error(pitr_lab: PitrLab) -> None:
    cfg = pitr_lab.cfg
    with pytest.raises(ModuleFailure, match="stanza") as failure:
        restore(cfg, "nostanza", stanza="nosuch")
    assert failure.value.kind == "stanza_missing", str(failure.value)
    assert not scratch_dir(cfg, "nostanza").exists()
    with pytest.raises(ModuleFailure, match="nosuch"):
        take_backup(cfg, stanza="nosuch")


def test_a_corrupt_backup_file_is_a_clear_error_and_leaves_no_scratch(pitr_lab: PitrLab) -> None:
    cfg = pitr_lab.cfg
    config = repository_copy(cfg, "corrupt")
    label = summary(pitr_lab.backup_run)["backup"]["label"]
    data = config.parent / "repo" / "backup" / lab_pgbackrest.STANZA / label / "pg_data"
    victim = max((p for p in (data / "base").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.write_bytes(b"not what was backed up" * 64)
    # (pgbackrest verify finds it too; reading its output is unit-tested: tests/unit/test_pitr_plan.py)
    with pytest.raises(ModuleFailure, match="pgbackrest restore failed") as failure:
        restore(cfg, "corrupt", config=str(config))
    assert "was removed; the live cluster was not touched" in str(failure.value)
    assert not scratch_dir(cfg, "corrupt").exists()


def test_broken_archiving_stops_a_backup_before_it_starts(pitr_lab: PitrLab) -> None:
    cfg = pitr_lab.cfg
    before = [b["label"] for b in plan.usable_backups(
        driver_for({"stanza": lab_pgbackrest.STANZA, "config": str(lab_pgbackrest.config_path(cfg.root)),
                    "pg_data_dir": str(cfg.node(PRIMARY).data_dir)}).info())]
    sql(cfg, PRIMARY, "ALTER SYSTEM SET archive_command = '/bin/false'")
    sql(cfg, PRIMARY, "SELECT pg_reload_conf()")
    try:
        with pytest.raises(ModuleFailure, match="archive") as failure:
            take_backup(cfg, archive_timeout=3)
        assert failure.value.kind == "archive", str(failure.value)
    finally:
        sql(cfg, PRIMARY, "ALTER SYSTEM RESET archive_command")
        sql(cfg, PRIMARY, "SELECT pg_reload_conf()")
    after = [b["label"] for b in plan.usable_backups(
        driver_for({"stanza": lab_pgbackrest.STANZA, "config": str(lab_pgbackrest.config_path(cfg.root)),
                    "pg_data_dir": str(cfg.node(PRIMARY).data_dir)}).info())]
    assert after == before


def test_check_mode_touches_nothing(pitr_lab: PitrLab) -> None:
    cfg = pitr_lab.cfg
    from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import backup as _pitr_backup
    from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import restore as _pitr_restore

    checked = _pitr_restore.run(restore_params(cfg, "plan-check"), check_mode=True)
    assert checked["changed"] and "proof" not in checked and not scratch_dir(cfg, "plan-check").exists()
    assert checked["wal"]["missing"] is None and checked["backup"]["label"]
    planned = _pitr_backup.run(backup_params(cfg, retention_full=1), check_mode=True)
    assert planned["would_take"] == "full"
    assert planned["would_expire"] == [summary(pitr_lab.backup_run)["backup"]["label"]]
    info = driver_for({"stanza": lab_pgbackrest.STANZA, "config": str(lab_pgbackrest.config_path(cfg.root)),
                       "pg_data_dir": str(cfg.node(PRIMARY).data_dir)}).info()
    assert len(plan.usable_backups(info)) == 1


def test_a_lab_copy_archives_into_a_repository_of_its_own(pitr_lab: PitrLab, lab_template: lab.LabConfig) -> None:
    cfg = pitr_lab.cfg
    config = lab_pgbackrest.config_path(cfg.root).read_text()
    assert f"repo1-path={lab_pgbackrest.repo_path(cfg.root)}" in config and str(lab_template.root) not in config
    for node in cfg.nodes:
        command = node.server().conf_setting("archive_command")
        assert str(lab_pgbackrest.config_path(cfg.root)) in command and f"--pg1-path={node.data_dir}" in command
    segment = archive_now(cfg)
    mine = {p.name[:24] for p in archive_files(lab_pgbackrest.config_path(cfg.root))}
    templates = {p.name[:24] for p in archive_files(lab_pgbackrest.config_path(lab_template.root))}
    assert segment in mine and segment not in templates


def test_pg_restore_verify_proves_the_newest_backup_and_readiness_reads_its_age(pitr_lab: PitrLab) -> None:
    cfg = pitr_lab.cfg
    from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import verify as _pitr_verify
    from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness as _readiness
    from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness_judge as judge

    settings = {"stanza": lab_pgbackrest.STANZA, "config": str(lab_pgbackrest.config_path(cfg.root)),
                "pg_data_dir": str(cfg.node(PRIMARY).data_dir)}

    def verified_age_check() -> dict[str, Any]:
        checks = _readiness._pg_backup_hook({"pg_backup": settings}, judge.thresholds({}), time.time())
        return next(c for c in checks if c["name"] == "pg_restore_verified_age")

    assert verified_age_check()["verdict"] == "warn", "no restore proven yet: a warning, never a pass"
    before = _live(cfg)
    # The runbook: the newest backup restored with the archive to its end, checked, recorded, the scratch removed.
    _cli, result = run_json("run", "pg_restore_verify", "-i", str(inventory_path(cfg)), "--yes", expect_rc=0)
    found = summary(result)
    proven = found["verify"]
    label = summary(pitr_lab.backup_run)["backup"]["label"]
    assert found["completed"] and found["end_state"]["ok"] and found["lock"]["key"].startswith("postgres-backups:")
    assert proven["verified"]["label"] == label and proven["scratch_state"] == "removed"
    assert not os.path.exists(proven["scratch_dir"]) and not os.path.exists(proven["scratch_dir"] + ".erlmcp-dr.json")
    record = _pitr_verify.record_path(settings)
    assert proven["record"] == record and os.stat(record).st_mode & 0o777 == 0o644
    # Replayed to the archive's end: the writer's last row is in it.
    assert proven["verified"]["last_xact_time"] >= pitr_lab.writes.committed[-1][1].isoformat()
    age = verified_age_check()
    assert age["verdict"] == "pass" and label in age["detail"], age
    recorded = open(record).read()

    # A check that does not hold fails the run, names the check, its value and its min, removes the scratch and
    # leaves the record as it was (the age keeps growing until a restore is proven again).
    params = restore_params(cfg, "verify", checks=[
        {"name": "rows", "query": "SELECT count(*) FROM pitr_rows", "min": ROWS},
        {"name": "orders", "query": "SELECT count(*) FROM pitr_rows WHERE id > 1000000"}], after="removed")
    with pytest.raises(ModuleFailure, match=r"1 check\(s\) failed: orders: 0 \(expected at least 1\)") as failure:
        _pitr_verify.run(params)
    assert failure.value.kind == "check_failed"
    assert [c["ok"] for c in failure.value.facts["checks"]] == [True, False]
    assert open(record).read() == recorded and not scratch_dir(cfg, "verify").exists()
    assert _live(cfg) == before


def test_an_s3_repository_backs_up_and_restores_and_a_denied_or_unreachable_one_is_a_clear_error(
        pitr_lab: PitrLab, tmp_path_factory: pytest.TempPathFactory) -> None:
    """moto's server over TLS, checking signatures as S3 does. The primary archives into the lab's repository AND
    the S3 one (repo2 of one config: pgBackRest pushes to both); pg_backup takes and verifies a backup in repo2; the
    restore reads S3 ALONE (a config naming only it: the site holding the local repository may be gone). moto's
    server is plain HTTP behind a TLS front of the test's (pitr_helpers.tls_front says why not moto's --ssl)."""
    cfg = pitr_lab.cfg
    folder = tmp_path_factory.mktemp("moto-s3")
    with moto_server.running(folder, env=S3_UNAUTHENTICATED_SETUP) as plain, tls_front(plain, folder) as url:
        key = s3_account(url)
        # Refusals first: nothing read, nothing written, each naming the repository and what to check.
        denied = s3_config(cfg, "s3-denied", url, ("AKIANOTAKEY", "wrong"))
        with pytest.raises(ModuleFailure, match="repo1 .* denied access: .*InvalidAccessKeyId.*repo1-s3-key") as no:
            restore(cfg, "s3-denied", config=str(denied))
        assert no.value.kind == "denied" and not scratch_dir(cfg, "s3-denied").exists()
        with pytest.raises(ModuleFailure, match="denied access") as no_backup:
            take_backup(cfg, config=str(denied))
        assert no_backup.value.kind == "denied"
        closed = s3_config(cfg, "s3-closed", url, key, port=moto_server._free_port(), io_timeout=1)
        with pytest.raises(ModuleFailure, match="repo1 .* cannot be reached: .*repo1-s3-endpoint") as unreachable:
            restore(cfg, "s3-closed", config=str(closed))
        assert unreachable.value.kind == "unreachable" and not scratch_dir(cfg, "s3-closed").exists()

        both = s3_config(cfg, "s3-both", url, key, with_local=True)
        assert both.stat().st_mode & 0o777 == 0o600  # it holds the S3 key
        driver = driver_for(backup_params(cfg, config=str(both), repo=2))
        driver.run(driver._pg_args() + ["stanza-create"], connect=True)
        archive_through(cfg, both)
        try:
            # Not verified here (pgbackrest verify reads the whole repository back through moto, the costliest step
            # of this test): the restore below, from S3 alone, proves this backup and its WAL.
            backup = take_backup(cfg, config=str(both), repo=2, verify=False)
            assert backup["label"] and "repo2" in backup["repository"]
            stop = float(backup["stopped_at"])
            wait_for(lambda: time.time() >= stop + 1, 5, interval=0.05, what="the second after the backup's stop")
            writes = Writes(list(pitr_lab.writes.committed))
            write_rows(cfg, 6, start_id=ROWS + 1000, writes=writes)
            archive_now(cfg)
        finally:
            archive_through(cfg, None)
        s3_only = s3_config(cfg, "s3-only", url, key)
        target = writes.committed[-3][1]
        restored = restore(cfg, "s3", config=str(s3_only), target_type="time", target=target.isoformat(),
                           after="removed")
    assert restored["backup"]["label"] == backup["label"] and str(s3_only) in restored["repository"]
    assert mismatches(writes, target, restored_ids(restored)) == {"missing": [], "extra": []}
