"""erlmcp.dr.run_end through real ansible-playbook runs (ansible-runner, as the runbooks run): the end of a runbook in
one task - the run lock released through erlmcp.dr.run_lock, then the summary published as the custom stat `summary`
(where ansible.builtin.set_stats put it). Each test has its own lock folder (ERLMCP_DR_LOCK_DIR)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402

pytestmark = pytest.mark.integration

KEY = "postgres:7301234567890123456"
SUMMARY = {"schema": 1, "runbook": "fixture", "action": "none", "completed": True, "did": ["nothing was changed"]}


def playbook(tmp: Path, *, take: bool = True, lock: Any = "{{ taken | default({}) }}", summary: Any = SUMMARY) -> Path:
    """Takes the lock (with take), then ends with run_end in the always section, given the lock's result as the
    runbooks give their start's."""
    tasks: list[dict[str, Any]] = []
    if take:
        tasks.append({"name": "Take the run lock", "erlmcp.dr.run_lock": {"key": KEY, "runbook": "fixture"},
                      "register": "taken"})
    play = {"name": "End", "hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "Work, and always end the run", "block": tasks or [{"name": "Nothing", "ansible.builtin.meta": "noop"}],
        "always": [{"name": "Release the run lock and publish the outcome",
                    "erlmcp.dr.run_end": {"lock": lock, "summary": summary}}]}]}
    path = tmp / "end.yml"
    path.write_text(yaml.safe_dump([play], sort_keys=False))
    return path


def run(tmp: Path, book: Path, check: bool = False) -> dict[str, Any]:
    """One run: its status, its custom stats and the run_end step's result."""
    import ansible_runner

    envvars = {"ERLMCP_DR_LOCK_DIR": str(tmp / "locks"), "ANSIBLE_COLLECTIONS_PATH": str(paths.collections_path())}
    runner = ansible_runner.run(
        private_data_dir=str(_made(tmp / "private")), playbook=str(book), envvars=envvars, quiet=True,
        inventory=f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}",
        cmdline="--check" if check else None)
    events = list(runner.events)
    stats = next(e["event_data"] for e in events if e["event"] == "playbook_on_stats")
    ends = [e for e in events if e["event"].startswith("runner_on_") and e["event"] != "runner_on_start"
            and e["event_data"].get("task_action") == "erlmcp.dr.run_end"]
    assert len(ends) == 1, [e["event"] for e in events]
    return {"status": runner.status, "rc": runner.rc, "custom": stats.get("artifact_data") or {},
            "end": ends[0]["event_data"]["res"], "end_event": ends[0]["event"],
            "tasks": [e["event_data"]["task"] for e in events if e["event"] == "playbook_on_task_start"]}


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def lock_decision(tmp: Path) -> str:
    return _lock.DirectoryStore(str(tmp / "locks")).inspect(KEY, "someone-else")["decision"]


def test_releases_the_lock_then_publishes_the_summary_in_one_task(tmp_path):
    outcome = run(tmp_path, playbook(tmp_path))

    assert outcome["status"] == "successful" and outcome["rc"] == 0, outcome
    assert outcome["tasks"] == ["Take the run lock", "Release the run lock and publish the outcome"]
    assert outcome["custom"] == {"summary": SUMMARY}, outcome["custom"]
    released = outcome["end"]["released"]
    assert released["released"] is True and released["key"] == KEY and outcome["end"]["changed"] is False
    assert lock_decision(tmp_path) == "take"  # free again


def test_without_a_lock_it_only_publishes(tmp_path):
    outcome = run(tmp_path, playbook(tmp_path, take=False))

    assert outcome["status"] == "successful", outcome
    assert outcome["custom"] == {"summary": SUMMARY} and "released" not in outcome["end"], outcome


def test_check_mode_takes_no_lock_releases_nothing_and_still_publishes(tmp_path):
    outcome = run(tmp_path, playbook(tmp_path), check=True)

    assert outcome["status"] == "successful", outcome
    assert outcome["custom"] == {"summary": SUMMARY}, outcome["custom"]
    assert outcome["end"]["released"]["would_release"] is False, outcome["end"]  # check mode held nothing
    assert lock_decision(tmp_path) == "take"


def test_a_release_that_fails_fails_the_task_with_run_locks_message_and_publishes_nothing(tmp_path):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("not a lock folder")

    # The lock's result as the start gave it, but naming a folder the release cannot use.
    outcome = run(tmp_path, playbook(tmp_path, lock={"key": KEY, "store_dir": str(not_a_folder)}))

    assert outcome["status"] == "failed" and outcome["rc"] != 0 and outcome["end_event"] == "runner_on_failed", outcome
    assert f"the run lock for {KEY} could not be used" in outcome["end"]["msg"], outcome
    assert outcome["custom"] == {}, outcome["custom"]
    # Not released: the lock's record is still in the folder it was taken in (its holder, the run, has ended).
    assert Path(_lock.DirectoryStore(str(tmp_path / "locks")).path_for(KEY)).exists()


def test_a_busy_lock_is_another_runs_and_is_not_released(tmp_path):
    busy = {"key": KEY, "failed": True, "busy": True, "msg": "another run holds the lock"}

    outcome = run(tmp_path, playbook(tmp_path, take=False, lock=busy))

    assert outcome["status"] == "successful" and "released" not in outcome["end"], outcome
    assert outcome["custom"] == {"summary": SUMMARY}


def test_a_summary_that_is_not_a_mapping_is_refused_with_what_was_expected(tmp_path):
    outcome = run(tmp_path, playbook(tmp_path, take=False, summary="done"))

    assert outcome["status"] == "failed", outcome
    assert "summary" in outcome["end"]["msg"] and "dict" in outcome["end"]["msg"], outcome["end"]["msg"]
    assert outcome["custom"] == {}
