"""A failback killed inside its database handover, between the fence of the current primary and the promotion of the
old region's node (issue 18, round 11): the position step recognises that state as the move's own and the same
command finishes it, never from a node that is behind, never with two writers. The real kill, on the lab:
tests/integration/test_failback_kill.py."""

from __future__ import annotations

from typing import Any

from erlmcp_dr.compose import failback, hooks

HOSTS = {name: {"pg_host": "127.0.0.1", "pg_port": port} for name, port in
         (("pg-a", 5001), ("pg-b", 5002), ("pg-c", 5003))}
FOLLOWS_B = "host=127.0.0.1 port=5002 user=replicator application_name=pg-a"
ARGS = {"back_to": "pg-a", "serving": "pg-b", "resuming": True}


class Node:
    """What the built-ins ask one PostgreSQL node; a stopped one refuses the connection."""

    def __init__(self, in_recovery: bool = True, conninfo: str | None = FOLLOWS_B, received: str | None = "0/3000100",
                 replayed: str | None = "0/3000100", down: bool = False) -> None:
        self.in_recovery, self.conninfo, self.received, self.replayed, self.down = (
            in_recovery, conninfo, received, replayed, down)
        self.query = ""

    def __enter__(self) -> Node:
        if self.down:
            raise OSError("connection refused")
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, query: str) -> Node:
        self.query = query
        return self

    def fetchone(self) -> tuple:
        if "primary_conninfo" in self.query:
            return (self.in_recovery, self.conninfo, self.received, self.replayed)
        if "transaction_read_only" in self.query:
            return (self.in_recovery, "off")
        return (1,)


def cluster(**nodes: Node) -> Any:
    by_port = {HOSTS[name]["pg_port"]: node for name, node in nodes.items()}
    return lambda login: by_port[login["port"]]


def fenced(**changes: Node) -> Any:
    """pg-b stopped by the fence, pg-a and pg-c standbys of it at the same position: the killed handover's state."""
    return cluster(**{"pg-a": Node(), "pg-b": Node(down=True),
                      "pg-c": Node(conninfo="host=127.0.0.1 port=5002"), **changes})


def test_a_failback_killed_between_its_fence_and_the_promotion_is_a_handover_to_continue() -> None:
    outcome = failback.database_position(ARGS, HOSTS, connect=fenced())
    details = outcome.summary["details"]
    assert outcome.ok, outcome.message
    assert details["handover_under_way"] is True and details["primary"] is None and details["rejoin_node"] is None
    assert (details["candidate"], details["fenced"]) == ("pg-a", "pg-b")
    assert details["handover"]["positions"] == {"pg-a": 0x3000100, "pg-c": 0x3000100}
    assert outcome.summary["did"] == [failback.NOTHING_CHANGED]


def test_a_candidate_ahead_of_the_other_standbys_is_continued_from() -> None:
    behind = Node(conninfo="host=127.0.0.1 port=5002", received="0/3000000", replayed="0/3000000")
    assert failback.database_position(ARGS, HOSTS, connect=fenced(**{"pg-c": behind})).ok


def test_no_writer_without_a_resumed_handover_is_refused_as_before() -> None:
    outcome = failback.database_position(dict(ARGS, resuming=False), HOSTS, connect=fenced())
    assert not outcome.ok and "there is no primary to fail back from" in outcome.message
    assert "had not entered the database handover" in outcome.message and "Nothing was changed" in outcome.message


def test_a_handover_is_not_continued_from_a_node_that_is_behind_or_follows_another_or_beside_a_writer() -> None:
    ahead = Node(conninfo="host=127.0.0.1 port=5002", received="0/3000200", replayed="0/3000100")
    cases = {
        "pg-c received more WAL than pg-a": fenced(**{"pg-c": ahead}),
        "pg-a follows 127.0.0.1:5003, not pg-b": fenced(**{"pg-a": Node(conninfo="host=127.0.0.1 port=5003")}),
        "pg-c takes writes": fenced(**{"pg-c": Node(in_recovery=False)}),
        "pg-b answers": fenced(**{"pg-b": Node(in_recovery=True)}),
    }
    for why, connect in cases.items():
        outcome = failback.database_position(ARGS, HOSTS, connect=connect)
        assert not outcome.ok and why in outcome.message, (why, outcome.message)
        assert "Nothing was changed" in outcome.message and "handover_under_way" not in outcome.summary["details"]


def test_with_a_handover_under_way_the_rejoin_and_catch_up_are_read_only_checks_of_that_state() -> None:
    position = failback.database_position(ARGS, HOSTS, connect=fenced())
    verified = {"position": position.summary}
    hosts_by_group = {"postgres": HOSTS}
    for step, stands_in_for in (("rejoin", "database_rejoin"), ("caught_up", "standby_caught_up")):
        outcome = failback.stand_in(step, {}, verified, hosts_by_group, connect=fenced())
        assert outcome is not None and outcome.ok, outcome
        assert outcome.summary["details"]["stands_in_for"] == stands_in_for
        assert outcome.summary["did"] == [failback.NOTHING_CHANGED]
    # Every other step runs as written; and without a handover under way, the rejoin does.
    assert failback.stand_in("database", {}, verified, hosts_by_group, connect=fenced()) is None
    assert failback.stand_in("rejoin", {}, {"position": {"details": {"rejoin_node": "pg-a"}}}, hosts_by_group) is None
    # The state changed meanwhile (the fenced primary answers again): refused, nothing changed.
    moved = failback.stand_in("rejoin", {}, verified, hosts_by_group, connect=fenced(**{"pg-b": Node(False)}))
    assert moved is not None and not moved.ok and "pg-b answers" in moved.message
    assert hooks.of("failback").stand_in is failback.stand_in
    assert hooks.of("regional_failover").stand_in("rejoin", {}, verified, hosts_by_group) is None


def test_the_summary_says_the_rejoin_was_left_to_the_switchover_during_a_handover() -> None:
    from erlmcp_dr.compose.engine import StepRecord

    stood_in = StepRecord(step="rejoin", title="rejoin", phase="forward", runs="database_rejoin", arguments={},
                          verified=True, changed=False, run_id=None, rc=None, problems=[], message="",
                          point_of_no_return=False, passed_point_of_no_return=False, started_at="", ended_at="",
                          duration=0.0, summary={"details": {"handover_under_way": True, "methods": [],
                                                             "copied_bytes": {}}})
    assert failback.summary_details([stood_in])["rejoin"]["method"].startswith("none (a handover under way")


def test_a_resumed_failback_past_its_point_of_no_return_is_not_gated_again(tmp_path: Any) -> None:
    """Killed inside the handover, no database takes writes, so the old region's application is degraded: gating
    the re-run on its health would never finish the move (the re-run stopped at the grace gate before this)."""
    outcome = failback.run_builtin("grace_gate", {"region": "a", "resuming": True}, {}, tmp_path / "hosts.yml")
    assert outcome.ok and outcome.summary["details"]["open"] is True
    assert outcome.summary["details"]["resumed_past_point_of_no_return"] is True
