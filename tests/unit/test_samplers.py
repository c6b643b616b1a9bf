"""The samplers' shared base (erlmcp_dr.probe: Sampler, RoleSampler), with made-up nodes: what the witnesses of the
switchover, failover and regional tests (WritersSampler, RedisPrimariesSampler) count on.

A round asks every node; a node that answers with an error does not hold the role and its connection is dropped, then
made again next round; two holders in one round are a split round; stopping ends the thread and closes every
connection. The real samplers run against PostgreSQL and Redis in tests/integration (test_two_operators.py,
test_regional_planned.py)."""

from __future__ import annotations

from typing import Any

from erlmcp_dr import paths
from erlmcp_dr.probe import RoleReport, RoleSampler, WritersReport

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402


class Unreachable(Exception):
    pass


class FakeConnection:
    def __init__(self, name: str, answers: list[Any]) -> None:
        self.name, self.answers, self.closed = name, answers, False

    def close(self) -> None:
        self.closed = True


class MadeUpSampler(RoleSampler):
    """Each node answers from its script, one answer a round: True/False, or Unreachable to raise."""

    ERRORS = (Unreachable,)

    def __init__(self, script: dict[str, list[Any]], interval: float = 0.001) -> None:
        super().__init__({name: {"name": name} for name in script}, interval, RoleReport())
        self.script = script
        self.opened: list[FakeConnection] = []

    def connect(self, params: dict[str, Any]) -> FakeConnection:
        conn = FakeConnection(params["name"], self.script[params["name"]])
        self.opened.append(conn)
        return conn

    def holds(self, conn: FakeConnection) -> bool:
        answer = conn.answers.pop(0) if conn.answers else False
        if answer is Unreachable:
            raise Unreachable(conn.name)
        return bool(answer)


def test_rounds_count_holders_and_a_failing_node_is_reconnected_next_round() -> None:
    sampler = MadeUpSampler({"a": [True, True, False], "b": [False, Unreachable, True], "c": [False, True, True]})
    for _ in range(3):
        sampler.sample()

    report = sampler.report
    assert report.rounds == 3 and report.most_at_once == 2
    assert [holders for _at, holders in report.split_rounds] == [["a", "c"], ["b", "c"]]
    b_connections = [conn for conn in sampler.opened if conn.name == "b"]
    assert len(b_connections) == 2 and b_connections[0].closed  # dropped on the error, made again next round
    sampler.close()
    assert all(conn.closed for conn in sampler.opened)


def test_the_thread_samples_until_stopped_then_closes_its_connections() -> None:
    sampler = MadeUpSampler({"a": [True] * 10_000, "b": [False] * 10_000})
    with sampler:
        wait_for(lambda: sampler.report.rounds >= 3, 30, interval=0.005, what="three rounds")
    rounds = sampler.report.rounds
    assert not sampler._thread.is_alive() and sampler.report.rounds == rounds  # stopped: no round after
    assert sampler.report.most_at_once == 1 and sampler.report.split_rounds == []
    assert sampler.opened and all(conn.closed for conn in sampler.opened)
    assert sampler.stop() is sampler.report  # stopping twice is harmless


def test_the_writers_report_keeps_its_published_names() -> None:
    report = WritersReport()
    report.record(["pg-a"])
    report.record(["pg-a", "pg-b"])
    assert report.max_writable == 2
    assert report.to_dict() == {"rounds": 2, "max_writable_nodes": 2, "rounds_with_two_writers": 1}
