"""A client that keeps writing while a runbook runs: what the application would have seen.

It writes one row every `interval` seconds through a multi-host libpq connection with
`target_session_attrs=read-write` (how erlmcp's own pool finds the primary), remembers
every id the server confirmed as committed, and measures the longest stretch without a
successful commit: the write-unavailability window. Afterwards `missing_on(conn)` tells
which confirmed commits the new primary does not have (data loss).

The client picks each row's id (a random base of its own, counted up), never the table's sequence: a standby
promoted after its primary died continues the sequence from the last value whose WAL it received, so it hands out
again the ids of writes that were lost, and a loss checked by the server's ids would be hidden by the writes after it.

Every such watcher (these, and erlmcp_dr.regional_probe's) is a `Sampler`: a thread that does one round every
`interval` seconds until stopped. `RoleSampler` is the witness shape: each round asks every node whether it holds a
role only one node may hold (takes writes, is a Redis primary) and counts the rounds where two did.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

import psycopg

TABLE = "erlmcp_dr_probe"


def multi_host_conninfo(endpoints: list[tuple[str, int]], user: str, password: str, dbname: str = "postgres",
                        connect_timeout: int = 2) -> str:
    hosts = ",".join(host for host, _ in endpoints)
    ports = ",".join(str(port) for _, port in endpoints)
    return psycopg.conninfo.make_conninfo(
        host=hosts, port=ports, user=user, password=password, dbname=dbname,
        connect_timeout=connect_timeout, target_session_attrs="read-write", application_name="erlmcp.dr probe",
    )


@dataclass
class ProbeReport:
    committed: list[int] = field(default_factory=list)
    commit_times: list[float] = field(default_factory=list)
    commit_ports: list[int] = field(default_factory=list)  # the server port that acknowledged each commit
    errors: int = 0
    attempts: int = 0
    started: float = 0.0
    stopped: float = 0.0

    @property
    def max_gap_seconds(self) -> float:
        """Longest time between two confirmed commits (or the run's edges): writes unavailable."""
        edges = [self.started, *self.commit_times, self.stopped]
        return max((b - a for a, b in zip(edges, edges[1:], strict=False)), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"committed": len(self.committed), "errors": self.errors, "attempts": self.attempts,
                "max_gap_seconds": round(self.max_gap_seconds, 4)}


class Sampler:
    """A thread that runs `sample()` every `interval` seconds, from `start()` (or entering the `with`) until `stop()`
    (or leaving it); `stop()` then lets the subclass close what it opened (`close()`) and returns its `report`."""

    THREAD_NAME = "sampler"
    report: Any

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.THREAD_NAME, daemon=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Any:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.close()
        return self.report

    def sample(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close the connections the rounds opened (called once the thread has ended)."""

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


class WriteProbe(Sampler):
    THREAD_NAME = "write-probe"

    def __init__(self, conninfo: str, interval: float = 0.01) -> None:
        super().__init__(interval)
        self.conninfo = conninfo
        self.report = ProbeReport()
        self._conn: psycopg.Connection | None = None
        # Ids of this probe only: a random base (2^62 of room, a million writes per probe) on a table other probes of
        # the same lab have written to.
        self._next_id = secrets.randbelow(1 << 42) << 20

    def start(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
        self.report.started = time.monotonic()
        super().start()

    def stop(self) -> ProbeReport:
        super().stop()
        self.report.stopped = time.monotonic()
        return self.report

    def sample(self) -> None:
        self.report.attempts += 1
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.conninfo, autocommit=True)
            self._next_id += 1
            row = self._conn.execute(f"INSERT INTO {TABLE} (id) VALUES (%s) RETURNING id, inet_server_port()",
                                     (self._next_id,)).fetchone()
            self.report.committed.append(row[0])
            self.report.commit_times.append(time.monotonic())
            self.report.commit_ports.append(row[1])
        except psycopg.Error:
            self.report.errors += 1
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def missing_on(self, conn: psycopg.Connection) -> list[int]:
        """Confirmed commits that conn's server does not have."""
        present = {row[0] for row in conn.execute(f"SELECT id FROM {TABLE}").fetchall()}
        return [i for i in self.report.committed if i not in present]


@dataclass
class RoleReport:
    """What a RoleSampler saw: how many rounds, the most nodes holding the role at once, and the rounds where more
    than one did (when, and which)."""

    rounds: int = 0
    most_at_once: int = 0
    split_rounds: list[tuple[float, list[str]]] = field(default_factory=list)

    def record(self, holders: list[str]) -> None:
        self.rounds += 1
        self.most_at_once = max(self.most_at_once, len(holders))
        if len(holders) > 1:
            self.split_rounds.append((time.monotonic(), holders))


class RoleSampler(Sampler):
    """Asks every node, every `interval` seconds, whether it holds a role only one node may hold.

    One connection per node (`connect`), reconnected when it drops; a node that cannot be reached (an error of
    `ERRORS`) does not hold the role: it cannot take a write either. A round with two holders is asked again before
    it counts as a split (`_confirmed`).
    """

    ERRORS: tuple[type[BaseException], ...] = ()

    def __init__(self, nodes: dict[str, dict[str, Any]], interval: float, report: RoleReport) -> None:
        super().__init__(interval)
        self.nodes = nodes  # name -> connection parameters
        self.report = report
        self._conns: dict[str, Any] = {}

    def connect(self, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    def holds(self, conn: Any) -> bool:
        raise NotImplementedError

    def usable(self, conn: Any) -> bool:
        """Whether a connection kept from an earlier round can be asked again."""
        return conn is not None

    def sample(self) -> None:
        holders = [name for name in sorted(self.nodes) if self._holds(name)]
        self.report.record(self._confirmed(holders))

    def _confirmed(self, holders: list[str]) -> list[str]:
        """The holders that held the role at one instant: the last one asked, and those asked before it that still
        hold the role when asked again after it answered.

        A round asks the nodes one after another, not at one instant: a hand-over that completes between two asks
        (Redis's FAILOVER demotes the old primary, then promotes the new one, within a millisecond) shows the old
        holder, asked before, and the new one, asked after, though they never held the role together. Asked again,
        the old holder says it no longer does; two nodes that both hold it keep saying so. A split shorter than one
        re-ask (about a millisecond on the lab) goes unseen, as it would between two rounds.
        """
        if len(holders) < 2:
            return holders
        return [name for name in holders[:-1] if self._holds(name)] + holders[-1:]

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def _holds(self, name: str) -> bool:
        conn = self._conns.get(name)
        try:
            if not self.usable(conn):
                conn = self._conns[name] = self.connect(self.nodes[name])
            return self.holds(conn)
        except self.ERRORS:
            if conn is not None:
                conn.close()
            self._conns.pop(name, None)
            return False


@dataclass
class WritersReport(RoleReport):
    @property
    def max_writable(self) -> int:
        return self.most_at_once

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "max_writable_nodes": self.max_writable,
                "rounds_with_two_writers": len(self.split_rounds)}


class WritersSampler(RoleSampler):
    """Asks every node, every `interval` seconds, whether it takes writes (a primary that is not
    read-only): the witness that no switchover or failover ever makes two writable nodes.
    """

    THREAD_NAME = "writers-sampler"
    QUERY = "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')"
    ERRORS = (psycopg.Error,)

    def __init__(self, nodes: dict[str, dict[str, Any]], interval: float = 0.01) -> None:
        super().__init__(nodes, interval, WritersReport())  # nodes: name -> psycopg connect kwargs

    def connect(self, params: dict[str, Any]) -> Any:
        return psycopg.connect(autocommit=True, **params)

    def usable(self, conn: Any) -> bool:
        return conn is not None and not conn.closed

    def holds(self, conn: Any) -> bool:
        in_recovery, read_only = conn.execute(self.QUERY).fetchone()
        return not in_recovery and read_only == "off"
