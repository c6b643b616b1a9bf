"""The samplers' shared base (erlmcp_dr.probe: Sampler, RoleSampler), with made-up nodes: what the witnesses of the
switchover, failover and regional tests (WritersSampler, RedisPrimariesSampler) count on.

A round asks every node; a node that answers with an error does not hold the role and its connection is dropped, then
made again next round; two holders in one round are a split round only if the ones asked first still hold the role
when asked again (a hand-over between two asks is not a split); stopping ends the thread and closes every
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
    def __init__(self, name: str) -> None:
        self.name, self.closed = name, False

    def close(self) -> None:
        self.closed = True


class MadeUpSampler(RoleSampler):
    """Each node answers from its script, one entry a round: True/False, or Unreachable to raise, the same at every ask
    of that round; or a list, one answer per ask of that round (the first ask, then the re-ask of a split)."""

    ERRORS = (Unreachable,)

    def __init__(self, script: dict[str, list[Any]], interval: float = 0.001) -> None:
        super().__init__({name: {"name": name} for name in script}, interval, RoleReport())
        self.script = script
        self.opened: list[FakeConnection] = []
        self.round = -1
        self.asks: dict[str, int] = {}

    def sample(self) -> None:
        self.round, self.asks = self.round + 1, {}
        super().sample()

    def connect(self, params: dict[str, Any]) -> FakeConnection:
        conn = FakeConnection(params["name"])
        self.opened.append(conn)
        return conn

    def holds(self, conn: FakeConnection) -> bool:
        entries = self.script[conn.name]
        entry = entries[self.round] if self.round < len(entries) else False
        ask = self.asks[conn.name] = self.asks.get(conn.name, -1) + 1
        answer = entry[min(ask, len(entry) - 1)] if isinstance(entry, list) else entry
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


def test_a_hand_over_between_two_asks_is_not_a_split_and_two_lasting_holders_are() -> None:
    # Round 1: a is asked while it holds the role, then hands it to b before b is asked; asked again, a no longer
    # holds it (Redis's FAILOVER: the old primary demotes itself before the new one is promoted). Round 2: a is
    # unreachable when asked again: it cannot take a write. Round 3: a and c both hold it and still do when asked
    # again: a split. Round 4: of three holders, only c still holds it with the last one: a split of two.
    sampler = MadeUpSampler({"a": [[True, False], [True, Unreachable], True, [True, False]],
                             "b": [True, False, False, [True, True]],
                             "c": [False, False, True, True]})
    for _ in range(4):
        sampler.sample()

    report = sampler.report
    assert report.rounds == 4 and report.most_at_once == 2
    assert [holders for _at, holders in report.split_rounds] == [["a", "c"], ["b", "c"]]


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
