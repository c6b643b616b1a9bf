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
