"""The composed run's journal: what a killed run leaves, and which run a new one resumes."""

from __future__ import annotations

from pathlib import Path

from erlmcp_dr.compose import journal


def test_a_running_journal_of_the_same_runbook_among_gone_holders_is_the_interrupted_run(tmp_path: Path) -> None:
    killed = journal.Journal(run_id="rf-1", runbook="regional_failover", from_region="a", to_region="b",
                             incident_id="rf-1", entered=["residency", "database"], entered_point_of_no_return=True)
    (tmp_path / "rf-1").mkdir()
    killed.save(tmp_path / "rf-1")
    assert oct((tmp_path / "rf-1" / journal.JOURNAL_FILE).stat().st_mode & 0o777) == "0o600"
    holders = [{"run_id": "other", "runbook": "database_failover"}, {"run_id": "rf-1", "runbook": "regional_failover"}]
    found = journal.interrupted_run(tmp_path, holders, "regional_failover")
    assert found is not None and found.entered_point_of_no_return and found.entered == ["residency", "database"]

    killed.status = "completed"  # a run that ended is nobody's to resume
    killed.save(tmp_path / "rf-1")
    assert journal.interrupted_run(tmp_path, holders, "regional_failover") is None


def test_holders_without_a_journal_or_with_a_path_for_a_run_id_resume_nothing(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / journal.JOURNAL_FILE).write_text("{not json")
    holders = [{"run_id": "../escape", "runbook": "regional_failover"}, {"run_id": "broken", "runbook":
               "regional_failover"}, {"run_id": "absent", "runbook": "regional_failover"}]
    assert journal.interrupted_run(tmp_path, holders, "regional_failover") is None


def test_the_latest_stopped_move_on_the_same_targets_is_resumed_when_no_killed_run_is_found(tmp_path: Path) -> None:
    def journal_of(run_id: str, status: str, locks: list, past: bool = True) -> None:
        (tmp_path / run_id).mkdir()
        journal.Journal(run_id=run_id, runbook="regional_failover", from_region="a", to_region="b",
                        incident_id=run_id, status=status, locks=locks, entered_point_of_no_return=past
                        ).save(tmp_path / run_id)

    journal_of("20261206T100000Z-regional_failover-0001", "stopped", ["pg:lab"])
    journal_of("20261206T100100Z-regional_failover-0002", "stopped", ["pg:other"])  # other targets
    journal_of("20261206T100200Z-regional_failover-0003", "stopped", ["pg:lab"], past=False)  # nothing promoted
    journal_of("20261206T100300Z-regional_failover-0004", "completed", ["pg:lab"])
    found = journal.unfinished_move(tmp_path, [], "regional_failover", ["dns:lab", "pg:lab"])
    assert found is not None and found.run_id == "20261206T100000Z-regional_failover-0001"
    assert journal.unfinished_move(tmp_path, [], "regional_failover", ["pg:elsewhere"]) is None


def test_a_resuming_run_carries_on_the_interrupted_runs_changes_and_records_its_own_before_they_happen(
        tmp_path: Path) -> None:
    """The write-ahead record of a built-in step (issue 17): the resumed run's step sees what the killed run recorded
    for it, and what the step records is in the journal file (0600) the moment it is recorded."""
    from types import SimpleNamespace

    from erlmcp_dr.compose import run as composed

    killed = journal.Journal(run_id="rf-1", runbook="regional_failover", from_region="a", to_region="b",
                             incident_id="rf-1", changes={"isolate": {"region": "a", "app": {
                                 "name": "app-a", "state": "stopping", "stopped_by": "rf-1"}}})
    run_dir = tmp_path / "rf-2"
    run_dir.mkdir()
    resumed = composed.ComposedRun(
        SimpleNamespace(name="regional_failover"), "rf-2", run_dir, tmp_path / "hosts.yml",
        SimpleNamespace(lock_keys=lambda: ["pg:lab"]), {"from_region": "a", "to_region": "b", "incident_id": "rf-1"},
        {}, None, None, None, resumes=killed)
    entry = resumed.action_journal("isolate")
    assert entry.run_id == "rf-2" and entry.previous == killed.changes["isolate"]
    assert resumed.action_journal("other").previous == {}

    entry.record({"region": "a", "app": {"name": "app-a", "state": "stopped", "stopped_by": "rf-1"}})
    saved = journal.load(run_dir)
    assert saved is not None and saved.changes["isolate"]["app"]["state"] == "stopped"
    assert oct((run_dir / journal.JOURNAL_FILE).stat().st_mode & 0o777) == "0o600"
    assert killed.changes["isolate"]["app"]["state"] == "stopping"  # the interrupted run's record is not rewritten


def test_the_journal_lists_verified_steps_in_the_workflows_order_whatever_order_they_ended_in(tmp_path: Path) -> None:
    """The order comes from the workflow the run executes (spec.Workflow.position), not from a second copy of it."""
    from types import SimpleNamespace

    from erlmcp_dr.compose import run as composed
    from erlmcp_dr.compose import spec
    from erlmcp_dr.compose.engine import StepRecord

    children = {name: {} for name in ("notify", "redis", "database")}
    workflow = spec.load("composed", {"steps": [
        {"id": "declare", "runbook": "notify", "background": True}, {"id": "redis", "runbook": "redis"},
        {"id": "database", "runbook": "database"}]}, {}, children, {})
    assert [workflow.position(step) for step in ("declare", "redis", "database", "absent")] == [0, 1, 2, -1]
    run = composed.ComposedRun(
        SimpleNamespace(name="composed"), "rf-3", tmp_path, tmp_path / "hosts.yml",
        SimpleNamespace(lock_keys=lambda: []), {"from_region": "a", "to_region": "b"}, {}, None, None, None)
    run.workflow = workflow  # what execute sets
    for step in ("redis", "database", "declare"):  # declare, in the background, ended last
        run.ended(StepRecord(step=step, title=step, phase="forward", runs=step, arguments={}, verified=True,
                             changed=True, run_id=None, rc=0, problems=[], message="", point_of_no_return=False,
                             passed_point_of_no_return=False, started_at="", ended_at="", duration=0.0))
    saved = journal.load(tmp_path)
    assert saved is not None and saved.verified == ["declare", "redis", "database"]
