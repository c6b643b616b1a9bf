"""A killed switchover's re-run never reports success with the old primary down (issue 16 row 5).

A switchover's end state includes the old primary streaming from the new one. A run killed (its whole tree, as
the controller dying) right after the step that fences and promotes leaves the old primary stopped and the
candidate promoted; the re-run must start the old primary and make it stream, or fail saying why: exit 0 only
with the whole end state verified.
"""

from __future__ import annotations

import pytest
from runbook_helpers import (
    failure_message,
    inventory_path,
    kill_cli,
    kill_playbook,
    plain_connect,
    primary_on,
    run_json,
    streaming_from,
    summary,
    wait_topology,
)

pytestmark = pytest.mark.integration


class Promoted:
    """The candidate is out of recovery: the fence-and-promote step has done its work."""

    def __init__(self, cfg, candidate: str) -> None:
        self.cfg, self.candidate, self.conn = cfg, candidate, None

    def __call__(self) -> bool:
        if self.conn is None or self.conn.closed:
            self.conn = plain_connect(self.cfg, self.candidate)
        return not self.conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]


def assert_switched_over_with_the_old_primary_streaming(cfg, result) -> None:
    facts = summary(result)
    assert result["succeeded"] is True and facts["end_state"]["ok"] is True, failure_message(result) or facts
    wait_topology(cfg, {"pg-b": primary_on(2), "pg-a": streaming_from("pg-b", 2), "pg-c": streaming_from("pg-b", 2)},
                  "pg-b primary, pg-a and pg-c streaming from it")


@pytest.mark.parametrize("entry", ["cli", "playbook"])
def test_a_switchover_killed_right_after_promoting_is_finished_with_the_old_primary_streaming(fresh_lab, home,
                                                                                              entry):
    cfg = fresh_lab
    inventory = str(inventory_path(cfg))
    promoted = Promoted(cfg, "pg-b")
    try:
        if entry == "cli":
            kill_cli(["run", "database_switchover", "-i", inventory, "-e", "candidate=pg-b", "--yes"], when=promoted)
        else:
            kill_playbook("database_switchover", inventory_path(cfg), ["candidate=pg-b"], when=promoted)
    finally:
        if promoted.conn is not None:
            promoted.conn.close()

    _cli, result = run_json("run", "database_switchover", "-i", inventory, "-e", "candidate=pg-b", "--yes",
                            expect_rc=0)

    assert_switched_over_with_the_old_primary_streaming(cfg, result)


class OldPrimaryStarting:
    """The follow step has started the old primary pg-a again (its postmaster.pid is back) after it was fenced."""

    def __init__(self, cfg) -> None:
        self.pid_file = cfg.node("pg-a").data_dir / "postmaster.pid"
        self.fenced = False

    def __call__(self) -> bool:
        if not self.pid_file.exists():
            self.fenced = True
            return False
        return self.fenced


@pytest.mark.parametrize("entry", ["cli", "playbook"])
def test_a_switchover_killed_while_starting_the_old_primary_is_finished_with_it_streaming(fresh_lab, home, entry):
    cfg = fresh_lab
    inventory = str(inventory_path(cfg))
    starting = OldPrimaryStarting(cfg)
    if entry == "cli":
        kill_cli(["run", "database_switchover", "-i", inventory, "-e", "candidate=pg-b", "--yes"], when=starting)
    else:
        kill_playbook("database_switchover", inventory_path(cfg), ["candidate=pg-b"], when=starting)

    _cli, result = run_json("run", "database_switchover", "-i", inventory, "-e", "candidate=pg-b", "--yes",
                            expect_rc=0)

    assert_switched_over_with_the_old_primary_streaming(cfg, result)


def test_a_second_switchover_killed_after_promoting_brings_back_the_old_primary_not_the_primary_of_record(
        fresh_lab, home):
    """The inventory's dr_primary_of_record (pg-a) is not the old primary of the second switchover (pg-b): the
    re-run must find pg-b from the new primary's last primary_conninfo, start it and make it stream, not report
    success with pg-b down and a warning."""
    cfg = fresh_lab
    inventory = str(inventory_path(cfg))
    run_json("run", "database_switchover", "-i", inventory, "-e", "candidate=pg-b", "--yes", expect_rc=0)
    wait_topology(cfg, {"pg-b": primary_on(2), "pg-a": streaming_from("pg-b", 2), "pg-c": streaming_from("pg-b", 2)},
                  "first switchover done")
    promoted = Promoted(cfg, "pg-c")
    try:
        kill_cli(["run", "database_switchover", "-i", inventory, "-e", "candidate=pg-c", "--yes"], when=promoted)
    finally:
        if promoted.conn is not None:
            promoted.conn.close()

    _cli, result = run_json("run", "database_switchover", "-i", inventory, "-e", "candidate=pg-c", "--yes",
                            expect_rc=0)

    facts = summary(result)
    assert result["succeeded"] is True and facts["end_state"]["ok"] is True, failure_message(result) or facts
    assert facts["old_primary"] == "pg-b" and facts["left_out"] == [], facts
    wait_topology(cfg, {"pg-c": primary_on(3), "pg-b": streaming_from("pg-c", 3), "pg-a": streaming_from("pg-c", 3)},
                  "pg-c primary, pg-a and pg-b streaming from it")
