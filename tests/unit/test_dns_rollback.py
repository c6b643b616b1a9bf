"""What rollback_of reads of an earlier dns_cutover run (module_utils/_dns/rollback.py): its result.json, or for a run
killed before writing one, the plan read back from its events; and the refusals that say why not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import plan, rollback  # noqa: E402

PLAN = {"action": "change", "records": [
    {"name": "api.erlmcp.lab.", "current": ["127.0.1.1"], "target": ["127.0.1.2"], "ttl": 30, "change": True},
    {"name": "health.erlmcp.lab.", "current": ["127.0.1.1"], "target": ["127.0.1.2"], "ttl": 30, "change": True},
    {"name": "www.erlmcp.lab.", "current": ["127.0.1.2"], "target": ["127.0.1.2"], "ttl": 30, "change": False}]}


def _event(folder: Path, counter: int, event: str, task: str, res: dict[str, Any] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{counter}-x.json").write_text(json.dumps(
        {"counter": counter, "event": event, "event_data": {"task": task, "res": res or {}}}))


def _runs(tmp_path: Path) -> tuple[str, Path]:
    """This run's folder (erlmcp_dr_run_dir) and the folder of the killed run beside it."""
    return str(tmp_path / "runs" / "this-run"), tmp_path / "runs" / "killed"


def test_a_finished_run_is_read_from_its_result(tmp_path: Path) -> None:
    run_dir, earlier = _runs(tmp_path)
    earlier.mkdir(parents=True)
    (earlier / "result.json").write_text(json.dumps({"facts": {"summary": {"records": []}}}))
    assert rollback.rollback_source(run_dir, "killed") == {"facts": {"summary": {"records": []}}}


def test_a_killed_run_is_rolled_back_from_the_plan_in_its_events(tmp_path: Path) -> None:
    run_dir, earlier = _runs(tmp_path)
    events = earlier / "artifacts" / "killed" / "job_events"
    _event(events, 1, "runner_on_start", "Plan what is missing (refuse when the servers disagree, unless force)")
    _event(events, 2, "runner_on_ok", "Plan what is missing (refuse when the servers disagree, unless force)",
           {"ansible_facts": {"dr_plan": PLAN}})
    (events / "3-cut.json").write_text('{"counter": 3, "ev')  # cut off while being written
    source = rollback.rollback_source(run_dir, "killed")
    assert source["interrupted"] is True
    records = source["facts"]["summary"]["records"]
    assert [r["name"] for r in records] == ["api.erlmcp.lab.", "health.erlmcp.lab."]  # www needed no change
    assert records[0] == {"name": "api.erlmcp.lab.", "applied": True,
                          "previous": {"values": ["127.0.1.1"], "ttl": 30}, "new": {"values": ["127.0.1.2"]}}

    # The cutover plan of the rollback: api holds the killed run's value (put back, guarded by it); health was
    # never reached (nothing to do); a warning says the run was cut off.
    before = [{"name": "api.erlmcp.lab.", "agree": True, "agreed_values": ["127.0.1.2"], "ttl": 30},
              {"name": "health.erlmcp.lab.", "agree": True, "agreed_values": ["127.0.1.1"], "ttl": 30}]
    planned = plan.cutover_plan(before, {"rollback_of": "killed"}, {"target": None}, source)
    assert planned["action"] == "change" and any("cut off" in w for w in planned["warnings"])
    assert [(r["name"], r["change"], r["expected"], r["target"]) for r in planned["records"]] == [
        ("api.erlmcp.lab.", True, ["127.0.1.2"], ["127.0.1.1"]),
        ("health.erlmcp.lab.", False, ["127.0.1.2"], ["127.0.1.1"])]


@pytest.mark.parametrize("events", [False, True], ids=["no-folder", "no-plan"])
def test_a_run_that_left_nothing_to_roll_back_from_says_why(tmp_path: Path, events: bool) -> None:
    run_dir, earlier = _runs(tmp_path)
    if events:
        _event(earlier / "artifacts" / "killed" / "job_events", 1, "runner_on_ok", "Lock the zone")
    with pytest.raises(rollback.RollbackError) as caught:
        rollback.rollback_source(run_dir, "killed")
    assert "killed" in str(caught.value) and "values=" in str(caught.value)
    assert ("no result.json" in str(caught.value)) is events


def test_a_text_that_is_no_run_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a run id"):
        rollback.rollback_source(_runs(tmp_path)[0], "../etc")
