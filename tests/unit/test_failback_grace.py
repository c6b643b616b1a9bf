"""failback's grace gate: the pure decision (compose/grace.py) and the sampling loop with a fake clock and fake
probes (compose/failback.grace_gate; the real probes run on the lab in test_failback.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Iterator, List

from erlmcp_dr.compose import failback, grace
from erlmcp_dr.compose.grace import Sample

GRACE, GAP = 60.0, 10.0


def healthy(*times: float) -> List[Sample]:
    return [Sample(at=t, ok=True) for t in times]


def test_no_sample_keeps_the_gate_closed_for_the_whole_grace_period() -> None:
    verdict = grace.decide([], now=100.0, grace_seconds=GRACE, max_gap=GAP)
    assert not verdict.open and verdict.remaining == GRACE and verdict.healthy_since is None


def test_continuous_health_for_the_grace_period_opens_the_gate() -> None:
    verdict = grace.decide(healthy(*range(0, 61, 5)), now=61.0, grace_seconds=GRACE, max_gap=GAP)
    assert verdict.open and verdict.remaining == 0.0 and verdict.healthy_since == 0.0 and verdict.healthy_for == 60.0


def test_a_failed_sample_restarts_the_timer_at_the_next_healthy_one() -> None:
    samples = [*healthy(0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55), Sample(at=57, ok=False, why="app down"),
               *healthy(60, 65, 70)]
    verdict = grace.decide(samples, now=70.0, grace_seconds=GRACE, max_gap=GAP)
    assert not verdict.open
    assert verdict.healthy_since == 60.0 and verdict.healthy_for == 10.0 and verdict.remaining == 50.0
    assert verdict.last_failure is not None and verdict.last_failure.why == "app down"
    assert "50.0 s left" in verdict.reason


def test_the_latest_sample_failing_keeps_the_whole_grace_period_left() -> None:
    samples = [*healthy(*range(0, 100, 5)), Sample(at=101, ok=False, why="Redis down")]
    verdict = grace.decide(samples, now=101.0, grace_seconds=GRACE, max_gap=GAP)
    assert not verdict.open and verdict.remaining == GRACE and "Redis down" in verdict.reason


def test_flapping_never_opens_the_gate() -> None:
    samples = [Sample(at=float(t), ok=t % 20 != 0) for t in range(1, 400)]
    for now in range(30, 400, 7):
        verdict = grace.decide([s for s in samples if s.at <= now], now=float(now), grace_seconds=GRACE, max_gap=GAP)
        assert not verdict.open and verdict.healthy_for < 20


def test_a_silence_longer_than_the_gap_breaks_the_continuity() -> None:
    samples = healthy(0, 5, 10, 40, 45, 50, 55, 60, 65, 70, 75)  # nobody looked between 10 and 40
    verdict = grace.decide(samples, now=75.0, grace_seconds=GRACE, max_gap=GAP)
    assert not verdict.open and verdict.healthy_since == 40.0


def test_a_stale_history_vouches_for_nothing() -> None:
    verdict = grace.decide(healthy(*range(0, 100, 5)), now=200.0, grace_seconds=GRACE, max_gap=GAP)
    assert not verdict.open and "grace_max_gap" in verdict.reason


def test_only_observed_health_counts_not_the_time_since_the_last_sample() -> None:
    verdict = grace.decide(healthy(0, 5), now=9.0, grace_seconds=8.0, max_gap=GAP)
    assert not verdict.open and verdict.healthy_for == 5.0


def test_kept_drops_what_can_no_longer_matter_and_samples_from_drops_malformed_items() -> None:
    samples = [Sample(at=0, ok=False), *healthy(*range(100, 300, 5))]
    kept = grace.kept(samples, grace_seconds=GRACE, max_gap=GAP)
    assert kept[0].at >= 295 - GRACE - GAP and kept[-1].at == 295
    assert grace.decide(kept, 295.0, GRACE, GAP).open
    data = [{"at": 1.0, "ok": True}, {"at": "x", "ok": True}, {"at": True, "ok": True}, {"at": 2.0}, "junk",
            {"at": 3, "ok": False, "why": "down"}]
    assert grace.samples_from(data) == [Sample(1.0, True), Sample(3.0, False, "down")]
    assert grace.samples_from({"not": "a list"}) == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def probes(clock: FakeClock, pattern: str) -> Iterator[Sample]:
    for mark in pattern:
        yield Sample(at=clock.now, ok=mark == "+", why="" if mark == "+" else "application down")


ARGS = {"region": "a", "app_url": "http://x", "redis_host": "h", "redis_port": 1, "grace_seconds": 10.0,
        "interval": 1.0, "wait": 30.0, "max_gap": 5.0}


def test_the_gate_samples_until_it_opens_and_keeps_a_private_history(tmp_path: Path) -> None:
    clock, history = FakeClock(), tmp_path / "grace" / "a.json"
    feed = probes(clock, "+" * 40)
    outcome = failback.grace_gate(ARGS, history, clock=clock, sleep=clock.sleep, probe=lambda _args: next(feed))
    assert outcome.ok and outcome.summary["details"]["samples_this_run"] == 11
    assert outcome.summary["details"]["open"] is True and outcome.summary["did"] == ["nothing was changed"]
    assert stat.S_IMODE(history.stat().st_mode) == 0o600 and len(json.loads(history.read_text())) == 11


def test_a_failed_sample_within_the_run_restarts_the_timer(tmp_path: Path) -> None:
    clock, history = FakeClock(), tmp_path / "a.json"
    feed = probes(clock, "+++++-" + "+" * 40)
    outcome = failback.grace_gate(ARGS, history, clock=clock, sleep=clock.sleep, probe=lambda _args: next(feed))
    details = outcome.summary["details"]
    assert outcome.ok and details["healthy_since"] == 1006.0 and details["samples_this_run"] == 17
    assert details["failed_this_run"][0]["why"] == "application down"


def test_the_gate_gives_up_when_the_grace_cannot_be_reached_within_the_wait_and_says_how_long_is_left(
        tmp_path: Path) -> None:
    clock, history = FakeClock(), tmp_path / "a.json"
    feed = probes(clock, "+" * 40)
    args = dict(ARGS, grace_seconds=3600.0, wait=3.0)
    outcome = failback.grace_gate(args, history, clock=clock, sleep=clock.sleep, probe=lambda _args: next(feed))
    assert not outcome.ok and outcome.summary["end_state"]["ok"] is False
    assert outcome.summary["details"]["samples_this_run"] == 1  # 3600 s cannot be reached in 3 s: no waiting
    assert "3600.0 s left" in outcome.message and "Nothing was changed" in outcome.message
    assert "grace_wait" in outcome.message

    # The next run continues the timer from the kept samples (no gap wider than max_gap in between).
    clock.now += 4.0
    again = failback.grace_gate(dict(args, grace_seconds=8.0, wait=30.0), history, clock=clock, sleep=clock.sleep,
                                probe=lambda _args: next(feed))
    assert again.ok and again.summary["details"]["healthy_since"] == 1000.0
    assert again.summary["details"]["samples_this_run"] == 5


def test_a_failed_sample_ends_a_short_run_at_once_with_the_whole_grace_left(tmp_path: Path) -> None:
    clock = FakeClock()
    feed = probes(clock, "-+++")
    outcome = failback.grace_gate(dict(ARGS, wait=5.0), tmp_path / "a.json", clock=clock, sleep=clock.sleep,
                                  probe=lambda _args: next(feed))
    assert not outcome.ok and outcome.summary["details"]["samples_this_run"] == 1
    assert "latest health sample failed (application down)" in outcome.message and "10 s grace" in outcome.message


def test_lsn_bytes_reads_both_halves() -> None:
    assert failback.lsn_bytes("0/0") == 0
    assert failback.lsn_bytes("16/B374D848") == (0x16 << 32) + 0xB374D848


def test_the_failback_workflow_loads_prepares_first_and_moves_back_with_one_point_of_no_return() -> None:
    from erlmcp_dr import catalog
    from erlmcp_dr.compose import run

    workflow = run.workflow_of(catalog.load("failback"))
    assert [step.id for step in workflow.steps] == ["residency", "grace", "position", "rejoin", "caught_up",
                                                     "redis_replica", "declare", "redis", "database", "services", "app",
                                                     "dns", "resolved"]
    assert workflow.point_of_no_return == "database"
    assert [step.id for step in workflow.steps if step.undo] == ["declare", "redis"]
    assert workflow.step("rejoin").call.runbook == "database_rejoin"
    assert workflow.step("database").call.runbook == "database_switchover"  # planned: zero acknowledged writes lost


def test_the_summary_says_rewind_or_reclone_and_the_bytes_copied() -> None:
    from erlmcp_dr.compose.engine import StepRecord

    def record(step: str, details: dict, arguments: dict) -> StepRecord:
        return StepRecord(step=step, title=step, phase="forward", runs="x", arguments=arguments, verified=True,
                          changed=True, run_id=None, rc=0, problems=[], message="", point_of_no_return=False,
                          passed_point_of_no_return=False, started_at="", ended_at="", duration=0.0,
                          summary={"details": details})

    found = failback.summary_details([
        record("grace", {"open": True, "healthy_for": 3.2, "remaining": 0.0, "grace_seconds": 3.0, "reason": "ok"}, {}),
        record("rejoin", {"methods": ["rewind"], "copied_bytes": {"pg-a": 5373952}}, {"node": "pg-a"})])
    assert found["rejoin"] == {"node": "pg-a", "method": "rewind", "copied_bytes": 5373952}
    assert found["grace"]["open"] is True
    again = failback.summary_details([record("rejoin", {"methods": [], "copied_bytes": {}}, {})])
    assert again["rejoin"] == {"node": None, "method": "none (already streaming)", "copied_bytes": 0}


def test_rewind_copied_bytes_reads_pg_rewinds_last_progress_line() -> None:
    from erlmcp_dr import paths

    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import follow_plan as _follow_plan

    output = "pg_rewind: servers diverged\n0/5248 kB (0%) copied\r5248/5248 kB (100%) copied\npg_rewind: Done!"
    assert _follow_plan.rewind_copied_bytes(output) == 5248 * 1024
    assert _follow_plan.rewind_copied_bytes("pg_rewind: no rewind required") == 0


class FakeServer:
    """What the built-ins ask a PostgreSQL node: recovery, read-only, WAL positions (the real ones: test_failback)."""

    def __init__(self, in_recovery: bool, lsn: str = "0/3000000") -> None:
        self.in_recovery, self.lsn = in_recovery, lsn

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, query: str) -> FakeServer:
        self.query = query
        return self

    def fetchone(self) -> tuple:
        if "pg_last_wal_replay_lsn" in self.query:
            return (self.in_recovery, self.lsn)
        if "pg_current_wal_lsn" in self.query:
            return (self.in_recovery, None if self.in_recovery else self.lsn)
        if "transaction_read_only" in self.query:
            return (self.in_recovery, "off")
        return (self.in_recovery,)


def servers(**nodes: FakeServer):  # noqa: ANN201 - a connect function over the fakes
    return lambda login: nodes[login["host"]]


def test_database_position_names_the_node_to_rejoin_or_none_once_moved_back_and_refuses_two_writers() -> None:
    args = {"back_to": "pg-a", "serving": "pg-b"}
    before = failback.database_position(args, {}, connect=servers(**{"pg-a": FakeServer(True),
                                                                      "pg-b": FakeServer(False)}))
    assert before.ok and before.summary["details"]["rejoin_node"] == "pg-a"
    after = failback.database_position(args, {}, connect=servers(**{"pg-a": FakeServer(False),
                                                                     "pg-b": FakeServer(True)}))
    assert after.ok and after.summary["details"]["rejoin_node"] is None
    split = failback.database_position(args, {}, connect=servers(**{"pg-a": FakeServer(False),
                                                                     "pg-b": FakeServer(False)}))
    assert not split.ok and "both take writes" in split.message and "allow_stop_primary" in split.message


def test_standby_caught_up_waits_for_the_primarys_position_and_accepts_a_completed_move_back() -> None:
    args = {"standby": "pg-a", "primary": "pg-b", "max_lag_bytes": 0, "timeout": 5}
    caught = failback.standby_caught_up(args, {}, connect=servers(**{"pg-a": FakeServer(True, "0/3000010"),
                                                                     "pg-b": FakeServer(False, "0/3000000")}))
    assert caught.ok and caught.summary["details"]["lag_bytes"] == 0
    back = failback.standby_caught_up(args, {}, connect=servers(**{"pg-a": FakeServer(False),
                                                                   "pg-b": FakeServer(True)}))
    assert back.ok and back.summary["details"]["moved_back"] is True
    neither = failback.standby_caught_up(args, {}, connect=servers(**{"pg-a": FakeServer(True),
                                                                      "pg-b": FakeServer(True)}))
    assert not neither.ok and "both are in recovery" in neither.message


class FakeRedis:
    def __init__(self, info: dict) -> None:
        self.replication = info

    def __enter__(self) -> FakeRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def info(self, section: str) -> dict:
        return self.replication


REDIS_HOSTS = {"redis-a": {"redis_host": "127.0.0.1", "redis_port": 7001},
               "redis-b": {"redis_host": "127.0.0.1", "redis_port": 7002}}


def redis_nodes(**infos: dict):  # noqa: ANN201 - a client factory over the fakes
    by_port = {REDIS_HOSTS[name]["redis_port"]: info for name, info in infos.items()}
    return lambda where: FakeRedis(by_port[where["port"]])


def test_redis_replica_synced_accepts_a_linked_replica_at_the_primarys_offset_refuses_a_primary_of_its_own() -> None:
    args = {"replica": "redis-a", "primary": "redis-b", "timeout": 1}
    primary = {"role": "master", "master_repl_offset": 500}
    replica = {"role": "slave", "master_host": "127.0.0.1", "master_port": 7002, "master_link_status": "up",
               "slave_repl_offset": 500}
    synced = failback.redis_replica_synced(args, REDIS_HOSTS, client_of=redis_nodes(**{"redis-a": replica,
                                                                                      "redis-b": primary}))
    assert synced.ok and synced.summary["details"]["offset"] == 500
    own = failback.redis_replica_synced(args, REDIS_HOSTS, client_of=redis_nodes(**{"redis-a": dict(primary),
                                                                                   "redis-b": primary}))
    assert not own.ok and "primary of its own" in own.message and "away_from=redis-a" in own.message
    back_replica = {"role": "slave", "master_host": "127.0.0.1", "master_port": 7001, "master_link_status": "up"}
    moved = failback.redis_replica_synced(args, REDIS_HOSTS, client_of=redis_nodes(**{"redis-a": primary,
                                                                                     "redis-b": back_replica}))
    assert moved.ok and moved.summary["details"]["moved_back"] is True
