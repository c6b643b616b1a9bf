"""dns_cutover killed between two records of a multi-record cutover (SIGKILL of the whole run right after the first
record was changed and verified), against the lab's real Knot primary and secondary.

- The next run with the same parameters finishes it: the guard takes the record already changed as done (it is at
  the target everywhere) and changes only the other; a third run changes nothing.
- `rollback_of` the killed run (which never wrote its result.json) puts back what it changed: its plan is read
  back from the run folder's events, a record it never reached is left alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from runbook_helpers import (
    changed_steps,
    dns_answers,
    failure_message,
    inventory_path,
    kill_cli,
    kill_playbook,
    run_json,
    runs_dir,
    summary,
)

from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

A, B = lab_dns.REGION_ADDRESSES["a"], lab_dns.REGION_ADDRESSES["b"]
FIRST, SECOND = lab_dns.RECORDS[0], lab_dns.RECORDS[1]
ABSOLUTE = {name: f"{name}.{lab_dns.ZONE}" for name in lab_dns.RECORDS}  # how the summary names them
CHANGE_TASK = "Change each record"


def answers(cfg: lab.LabConfig) -> dict[str, dict[str, list[str]]]:
    return {name: dns_answers(cfg, name) for name in lab_dns.RECORDS}


def at(first: str, second: str) -> dict[str, dict[str, list[str]]]:
    return {FIRST: {srv: [first] for srv in lab_dns.SERVER_NAMES},
            SECOND: {srv: [second] for srv in lab_dns.SERVER_NAMES}}


def test_a_cutover_killed_between_two_records_is_finished_by_the_next_run(dns_zone: lab.LabConfig, home: Path):
    inventory = inventory_path(dns_zone)
    output = kill_playbook("dns_cutover", inventory, ["region=b"], after=CHANGE_TASK)
    # The group is killed once the first record's result is printed; the loop's next item starts at once, so on a
    # loaded machine the second record's UPDATE may reach the primary before the kill lands (the last CI saw it
    # there and not yet at the secondary). Wait until the servers agree (the secondary copies the primary by zone
    # transfer), then the next run must finish whatever is left, and only that.
    after_kill, _ = lab.wait_for(lambda: _agreed(answers(dns_zone)), 60, interval=0.1, what="the DNS servers agreeing")
    assert after_kill[FIRST] == at(B, A)[FIRST], output[-20:]  # the first record changed everywhere
    assert after_kill[SECOND] in (at(B, A)[SECOND], at(B, B)[SECOND]), after_kill
    left = [] if after_kill[SECOND] == at(B, B)[SECOND] else [SECOND]

    _, result = run_json("run", "dns_cutover", "-i", str(inventory), "-e", "region=b", "--yes", expect_rc=0)
    done = summary(result)
    assert done["completed"] and done["end_state"]["ok"], failure_message(result) or done
    by_name = {rec["name"]: rec for rec in done["records"]}
    assert [name for name, rec in by_name.items() if rec["applied"]] == [ABSOLUTE[name] for name in left], \
        done["records"]
    assert done["did"] == ([f"{ABSOLUTE[SECOND]} changed from {[A]} to {[B]}"] if left else ["nothing was changed"]), \
        done["did"]
    assert answers(dns_zone) == at(B, B)

    _, again = run_json("run", "dns_cutover", "-i", str(inventory), "-e", "region=b", "--yes", expect_rc=0)
    assert summary(again)["did"] == ["nothing was changed"] and changed_steps(again) == [], again["steps"]


def _first_record_reported(run_id: str) -> Callable[[], bool]:
    """Whether the run's events (ansible-runner's job_events, written as they happen) hold the result of the first
    record's change."""
    seen: set[str] = set()

    def reported() -> bool:
        folder = runs_dir() / run_id / "artifacts" / run_id / "job_events"
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            if path.name in seen:
                continue
            try:
                event = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being written, or moved into place meanwhile
            seen.add(path.name)
            data = event.get("event_data") or {}
            if event.get("event") == "runner_item_on_ok" and str(data.get("task", "")).startswith(CHANGE_TASK):
                return True
        return False

    return reported


def _agreed(seen: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]] | None:
    return seen if all(len({tuple(values) for values in servers.values()}) == 1 for servers in seen.values()) else None


def test_rollback_of_a_killed_cutover_puts_back_what_it_changed(dns_zone: lab.LabConfig, home: Path):
    inventory = str(inventory_path(dns_zone))
    killed = "killed-cutover"
    kill_cli(["run", "dns_cutover", "-i", inventory, "-e", "region=b", "--yes", "--run-id", killed],
             _first_record_reported(killed))
    # The kill lands once the first record's result is seen; on a quick machine the run may have changed the second
    # record at the primary meanwhile (its result never reported), which the secondary then copies by zone transfer:
    # wait until the servers agree (the cutover refuses servers that disagree), then the rollback must put it back.
    after_kill, _ = lab.wait_for(lambda: _agreed(answers(dns_zone)), 60, interval=0.1, what="the DNS servers agreeing")
    assert after_kill[FIRST] == at(B, A)[FIRST], after_kill  # the first record was changed everywhere
    reached = [name for name in lab_dns.RECORDS if any(values == [B] for values in after_kill[name].values())]
    assert not (runs_dir() / killed / "result.json").exists()

    _, back = run_json("run", "dns_cutover", "-i", inventory, "-e", f"rollback_of={killed}", "--yes", expect_rc=0)
    facts = summary(back)
    assert facts["completed"] and facts["rollback_of"] == killed, failure_message(back) or facts
    assert [rec["name"] for rec in facts["records"] if rec["applied"]] == [ABSOLUTE[name] for name in reached], \
        facts["records"]
    assert any("cut off" in warning for warning in facts["warnings"]), facts["warnings"]
    assert answers(dns_zone) == at(A, A)


def test_rollback_of_a_run_that_left_no_trace_says_why_not(dns_zone: lab.LabConfig, home: Path):
    inventory = str(inventory_path(dns_zone))
    _, result = run_json("run", "dns_cutover", "-i", inventory, "-e", "rollback_of=no-such-run", "--yes",
                         expect_rc=1)
    message = failure_message(result)
    assert "no-such-run" in message and "values=" in message, message
    assert answers(dns_zone) == at(A, A)
