"""A client that keeps writing while a runbook runs: what the application would have seen.

It writes one row every `interval` seconds through a multi-host libpq connection with
`target_session_attrs=read-write` (how erlmcp's own pool finds the primary), remembers
every id the server confirmed as committed, and measures the longest stretch without a
successful commit: the write-unavailability window. Afterwards `missing_on(conn)` tells
which confirmed commits the new primary does not have (data loss).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

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


class WriteProbe:
    def __init__(self, conninfo: str, interval: float = 0.01) -> None:
        self.conninfo = conninfo
        self.interval = interval
        self.report = ProbeReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="write-probe", daemon=True)

    def __enter__(self) -> WriteProbe:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
        self.report.started = time.monotonic()
        self._thread.start()

    def stop(self) -> ProbeReport:
        self._stop.set()
        self._thread.join()
        self.report.stopped = time.monotonic()
        return self.report

    def _loop(self) -> None:
        conn = None
        while not self._stop.is_set():
            self.report.attempts += 1
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.conninfo, autocommit=True)
                row = conn.execute(f"INSERT INTO {TABLE} DEFAULT VALUES RETURNING id").fetchone()
                self.report.committed.append(row[0])
                self.report.commit_times.append(time.monotonic())
            except psycopg.Error:
                self.report.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def missing_on(self, conn: psycopg.Connection) -> list[int]:
        """Confirmed commits that conn's server does not have."""
        present = {row[0] for row in conn.execute(f"SELECT id FROM {TABLE}").fetchall()}
        return [i for i in self.report.committed if i not in present]


@dataclass
class WritersReport:
    rounds: int = 0
    max_writable: int = 0
    split_rounds: list[tuple[float, list[str]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "max_writable_nodes": self.max_writable,
                "rounds_with_two_writers": len(self.split_rounds)}


class WritersSampler:
    """Asks every node, every `interval` seconds, whether it takes writes (a primary that is not
    read-only): the witness that no switchover or failover ever makes two writable nodes.

    One connection per node, reconnected when it drops; a node that cannot be reached counts as
    not writable (it cannot take a write either).
    """

    QUERY = "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')"

    def __init__(self, nodes: dict[str, dict[str, Any]], interval: float = 0.01) -> None:
        self.nodes = nodes  # name -> psycopg connect kwargs
        self.interval = interval
        self.report = WritersReport()
        self._conns: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="writers-sampler", daemon=True)

    def __enter__(self) -> WritersSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> WritersReport:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        return self.report

    def _writable(self, name: str) -> bool:
        conn = self._conns.get(name)
        try:
            if conn is None or conn.closed:
                conn = self._conns[name] = psycopg.connect(autocommit=True, **self.nodes[name])
            in_recovery, read_only = conn.execute(self.QUERY).fetchone()
        except psycopg.Error:
            if conn is not None:
                conn.close()
            self._conns.pop(name, None)
            return False
        return not in_recovery and read_only == "off"

    def _loop(self) -> None:
        while not self._stop.is_set():
            writers = [name for name in sorted(self.nodes) if self._writable(name)]
            self.report.rounds += 1
            self.report.max_writable = max(self.report.max_writable, len(writers))
            if len(writers) > 1:
                self.report.split_rounds.append((time.monotonic(), writers))
            self._stop.wait(self.interval)
