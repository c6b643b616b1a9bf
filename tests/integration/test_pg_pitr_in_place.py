"""pg_restore_in_place on a real lab (issue 21): the live primary's own data directory restored to a time with
pgBackRest 2.45 (--delta), promoted on a new timeline by real PostgreSQL 15 recovery, the standbys rewound onto it
with pg_rewind (database_rejoin's engine), all under the cluster's run lock.

One lab, one test (CI's budget): a backup, a writer logging each acknowledged insert with its commit time, a target
time between two commits. The runbook refuses without confirmation and the engine's check mode touches nothing; a
restore SIGKILLed mid-way (its primary stopped, pgBackRest writing over the data directory) is finished by the
runbook run with the same target (--yes). That run is first held by the engine's phase hook as it enters the restore
(the cluster's lock held, the primary stopped): the same runbook from a second controller state home and a
database_switchover are turned away busy (exit 3) naming it, changing nothing. The end: exactly the rows committed
at or before the target, on a new timeline, the standbys streaming it with the same rows. The kill at every other
phase: benchmarks/pitr_kill_matrix.py.
"""

from __future__ import annotations

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

import pytest
from pitr_helpers import PRIMARY, row_ids, standbys_follow_with_the_rows, take_backup, write_rows
from runbook_helpers import (
    CLI_HANG_GUARD,
    DEADLINE,
    inventory_path,
    new_lab,
    node_state,
    runbook_cli,
    runbook_command,
    summary,
    venv_path,
    wait_for,
)

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import pgbackrest as lab_pgbackrest
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import in_place  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.modules import pg_restore_in_place as in_place_module  # noqa: E402

pytestmark = pytest.mark.integration

ROWS = 30
STANDBYS = ("pg-b", "pg-c")


@pytest.fixture()
def lab_with_backup(lab_template: lab.LabConfig, tmp_path: Path) -> Iterator[lab.LabConfig]:
    with new_lab() as cfg:
        os.environ["ERLMCP_DR_HOME"] = str(tmp_path / "home")
        try:
            backup = take_backup(cfg, verify=False)  # proven verified in test_pg_pitr.py; here only the restore
            # pgBackRest records the backup's stop in whole seconds: time targets count from the next second on.
            wait_for(lambda: time.time() >= float(backup["stopped_at"]) + 1, 5, interval=0.05,
                     what="the second after the backup's stop")
            yield cfg
        finally:
            os.environ.pop("ERLMCP_DR_HOME", None)


# A restore in place run in a process of its own, to be killed with SIGKILL.
_IN_PLACE_IN_A_PROCESS = """
import json, sys
from erlmcp_dr.paths import ensure_collection_importable
ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import in_place
in_place.run(json.load(open(sys.argv[1])))
"""


def node_state_or_none(cfg: lab.LabConfig, node: str) -> dict[str, Any] | None:
    try:
        return node_state(cfg, node)
    except Exception:  # noqa: BLE001 - a node that does not answer
        return None


def _held_run(run_args: tuple[str, ...], tmp_path: Path, phase: str) -> tuple[subprocess.Popen, Path]:
    """`runbook run ... --yes --json` in the background, held by the engine's phase hook as it enters `phase` (until
    <hook>/pause-<phase> is removed); returns once it is held there."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / f"pause-{phase}").write_text("")
    env = dict(os.environ, PATH=venv_path(), ERLMCP_DR_WARM="0", **{in_place.PHASE_HOOK_ENV: str(hook)})
    run = subprocess.Popen([*runbook_command(), *run_args, "--yes", "--json"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: run.poll() is not None or ((hook / "phases").exists()
                                                   and phase in (hook / "phases").read_text().split()),
                 DEADLINE, interval=0.05, what=f"the restore in place held at {phase}")
    except BaseException:
        run.kill()
        raise
    assert run.poll() is None, f"the run ended (rc {run.returncode}) before it was held at {phase}"
    return run, hook


def _a_second_operator_is_turned_away_changing_nothing(cfg: lab.LabConfig, tmp_path: Path,
                                                       run_args: tuple[str, ...], marker: Path,
                                                       before: dict[str, Any]) -> None:
    """While a restore in place holds the cluster's lock: the same runbook from another controller state home and a
    database_switchover both exit 3 (busy) naming the holder's run, and change nothing."""
    key = f"postgres:{before['system_identifier']}"
    holder = next(record for record in (json.loads(path.read_text()) for path in (cfg.root / "locks").glob(
        "*.lock.json")) if record.get("key") == key)
    left, standbys = marker.read_text(), {name: node_state(cfg, name)["timeline"] for name in STANDBYS}
    os.environ["ERLMCP_DR_HOME"], home = str(tmp_path / "second-home"), os.environ["ERLMCP_DR_HOME"]
    try:
        second = runbook_cli(*run_args, "--yes")
        switchover = runbook_cli("run", "database_switchover", "-i", str(inventory_path(cfg)), "-e", "candidate=pg-b",
                                 "--yes")
    finally:
        os.environ["ERLMCP_DR_HOME"] = home
    for refused in (second, switchover):
        assert refused.rc == 3 and holder["run_id"] in refused.stderr, refused
    assert marker.read_text() == left and node_state_or_none(cfg, PRIMARY) is None
    assert {name: node_state(cfg, name)["timeline"] for name in STANDBYS} == standbys == {
        name: before["timeline"] for name in STANDBYS}


def test_a_restore_in_place_keeps_exactly_the_rows_committed_by_the_target_and_the_standbys_follow_its_timeline(
        lab_with_backup: lab.LabConfig, tmp_path: Path) -> None:
    cfg = lab_with_backup
    writes = write_rows(cfg, ROWS)
    target = writes.random_targets(1, random.Random(2121))[0]
    before = node_state(cfg, PRIMARY)
    data_dir = str(cfg.node(PRIMARY).data_dir)
    marker = Path(in_place.marker_path(data_dir))
    run_args = ("run", "pg_restore_in_place", "-i", str(inventory_path(cfg)), "-e", "target_type=time",
                "-e", f"target={target.isoformat()}")

    # The point of no return is declared and confirmed: without a terminal to ask on and without --yes, nothing runs.
    refused = runbook_cli(*run_args)
    assert refused.rc == 2 and "needs confirmation" in refused.stderr, refused
    # The plan (check mode) reads the node, chooses the backup, checks the WAL, and changes nothing.
    params = {name: option.get("default") for name, option in in_place_module.argument_spec().items()}
    params.update(stanza=lab_pgbackrest.STANZA, config=str(lab_pgbackrest.config_path(cfg.root)),
                  pg_data_dir=data_dir, target_type="time", target=target.isoformat(),
                  login_port=cfg.node(PRIMARY).port, login_user=lab.SUPERUSER, login_password=lab.LAB_PASSWORD)
    planned = in_place.run(params, check_mode=True)
    assert planned["changed"] and planned["action"] == "restore" and planned["from_timeline"] == before["timeline"]
    assert planned["wal"]["missing"] is None and not marker.exists()
    assert node_state(cfg, PRIMARY)["timeline"] == before["timeline"] and len(row_ids(cfg, PRIMARY)) == ROWS

    # The restore's engine in a process of its own, SIGKILLed with its process group (pgbackrest with it) once the
    # primary is stopped and its own configuration kept: pgBackRest is restoring over its data directory.
    (tmp_path / "params.json").write_text(json.dumps(params))
    victim = subprocess.Popen([sys.executable, "-c", _IN_PLACE_IN_A_PROCESS, str(tmp_path / "params.json")],
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (marker.exists() and '"own_files"' in marker.read_text()) or victim.poll() is not None,
                 DEADLINE, interval=0.002, what="the restore in place to stop the primary")
        assert victim.poll() is None, "the restore ended before it could be killed"
        os.killpg(victim.pid, signal.SIGKILL)
    finally:
        victim.wait(timeout=DEADLINE)
    assert victim.returncode == -signal.SIGKILL and '"restoring"' in marker.read_text()
    assert node_state_or_none(cfg, PRIMARY) is None, "the primary serves nothing once stopped"

    # The next run with the same target finishes it, under the cluster's lock, and verifies the end state. It is
    # first held by the engine's phase hook as it enters the restore (the lock held, the primary stopped, pgBackRest
    # not started) while a second operator is turned away.
    finishing, hook = _held_run(run_args, tmp_path, "restore")
    try:
        _a_second_operator_is_turned_away_changing_nothing(cfg, tmp_path, run_args, marker, before)
    finally:
        (hook / "pause-restore").unlink()
    out, err = finishing.communicate(timeout=CLI_HANG_GUARD)
    assert finishing.returncode == 0, err[-3000:]
    found = summary(json.loads(out))
    restored = found["in_place"]
    assert found["completed"] and found["end_state"]["ok"] and found["point_of_no_return_passed"], found
    assert found["lock"]["key"] == f"postgres:{before['system_identifier']}"
    assert restored["action"] in ("restore", "finish") and restored["from_timeline"] == before["timeline"]
    new_timeline = restored["new_timeline"]
    assert new_timeline > before["timeline"]
    expected = writes.at_or_before(target)
    assert expected and len(expected) < ROWS, "the target lies between the writes"
    assert row_ids(cfg, PRIMARY) == expected, "exactly the rows committed at or before the target"
    assert restored["proof"]["last_xact_time"] == max(at for _id, at in writes.committed if at <= target).isoformat()
    members = {name: (member["role"], member["timeline"]) for name, member in restored["members_after"].items()}
    assert members == {name: ("primary" if name == PRIMARY else "standby", new_timeline)
                       for name in (PRIMARY, *STANDBYS)}, found
    # The standbys stream the new timeline and hold what the primary holds; a row written now reaches them.
    standbys_follow_with_the_rows(cfg, STANDBYS, new_timeline, expected, new_id=ROWS + 1)
    # The node's own postgresql.auto.conf is back: no recovery target left to stop a later standby of it.
    assert "recovery_target" not in (cfg.node(PRIMARY).data_dir / "postgresql.auto.conf").read_text()
    assert '"promoted"' in marker.read_text() and oct(marker.stat().st_mode & 0o777) == oct(0o600)
