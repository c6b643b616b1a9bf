"""What a client sees of a regional move on the lab: writes through the public name, and the witnesses that never
two nodes took writes (the regional_failover tests and benchmarks/regional.py).

- `PublicNameWriter`: every `interval` seconds, resolves the public name (api.<zone>) at the lab's primary DNS
  server, as a client with a zero TTL would, and POSTs one write to the application at that address. It remembers
  every write the application acknowledged (HTTP 200 with a row id and a session key) and when, so afterwards
  `missing(...)` names the acknowledged rows the serving database lacks and the acknowledged session keys the
  serving Redis lacks (data lost), and `max_gap_seconds` is the longest stretch without an acknowledged write.
- `RedisPrimariesSampler`: asks every Redis node its role every `interval` seconds (one connection per node,
  reconnected when it drops; a node that does not answer cannot take a write): the witness that a hand-over never
  makes two Redis primaries. The database's is `erlmcp_dr.probe.WritersSampler`.

Both are samplers of erlmcp_dr.probe (`Sampler`, `RoleSampler`): the thread and its rounds are written there once.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from erlmcp_dr.lab.config import LabConfig
from erlmcp_dr.probe import RoleReport, RoleSampler, Sampler

PUBLIC_NAME = "api"
HTTP_TIMEOUT = 5.0  # seconds one write may take: the application's own driver timeouts are shorter


@dataclass
class AcknowledgedWrite:
    row_id: int
    session_key: str
    session_id: str  # the row's own identity: a database promoted after a loss gives lost rows' ids to new ones
    region: str
    database: str | None
    redis: str | None
    at: float  # time.monotonic() when the acknowledgement arrived
    wall: float  # time.time() then: to compare with a run's timeline (UTC timestamps)


@dataclass
class WriterReport:
    acknowledged: list[AcknowledgedWrite] = field(default_factory=list)
    attempts: int = 0
    errors: int = 0
    started: float = 0.0
    stopped: float = 0.0

    @property
    def max_gap_seconds(self) -> float:
        """Longest time between two acknowledged writes (or the run's edges): writes unavailable to the client."""
        edges = [self.started, *(write.at for write in self.acknowledged), self.stopped]
        return max((b - a for a, b in zip(edges, edges[1:], strict=False)), default=0.0)

    def first_in(self, region: str, after: float = 0.0) -> AcknowledgedWrite | None:
        """The first write acknowledged by `region`'s application at or after `after` (monotonic)."""
        return next((w for w in self.acknowledged if w.region == region and w.at >= after), None)

    def to_dict(self) -> dict[str, Any]:
        return {"acknowledged": len(self.acknowledged), "attempts": self.attempts, "errors": self.errors,
                "max_gap_seconds": round(self.max_gap_seconds, 4),
                "regions": sorted({write.region for write in self.acknowledged})}


class PublicNameWriter(Sampler):
    THREAD_NAME = "public-name-writer"

    def __init__(self, cfg: LabConfig, interval: float = 0.02) -> None:
        from erlmcp_dr.lab import app as lab_app
        from erlmcp_dr.lab import dns as lab_dns

        super().__init__(interval)
        self.dns_server = lab_dns.servers(cfg)[0]
        self.port = lab_app.apps(cfg)[0].port  # every region's instance listens on the same port, its own address
        self.report = WriterReport()

    def start(self) -> None:
        self.report.started = time.monotonic()
        super().start()

    def stop(self) -> WriterReport:
        super().stop()
        self.report.stopped = self.report.stopped or time.monotonic()
        return self.report

    def sample(self) -> None:
        self.report.attempts += 1
        written = self._write_once()
        if written is None:
            self.report.errors += 1
        else:
            self.report.acknowledged.append(written)

    def _write_once(self) -> AcknowledgedWrite | None:
        from erlmcp_dr.lab import dns as lab_dns

        try:
            addresses = lab_dns.answers(self.dns_server, PUBLIC_NAME)
            if not addresses:
                return None
            request = urllib.request.Request(f"http://{addresses[0]}:{self.port}/write", method="POST",
                                             data=json.dumps({"note": "public-name writer"}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310 - the lab's address
                answer = json.loads(response.read())
        except Exception:  # noqa: BLE001 - a refused, failed or timed-out write is one not acknowledged: counted
            return None
        return acknowledged_write(answer)


def acknowledged_write(answer: Any) -> AcknowledgedWrite | None:
    """The lab application's answer to a write (POST /write) as an acknowledged write; None if it is not one."""
    if not isinstance(answer, dict) or not {"id", "session_key", "session_id"} <= answer.keys():
        return None
    return AcknowledgedWrite(row_id=int(answer["id"]), session_key=str(answer["session_key"]),
                             session_id=str(answer["session_id"]), region=str(answer.get("region")),
                             database=answer.get("database"), redis=answer.get("redis"), at=time.monotonic(),
                             wall=time.time())


def missing(cfg: LabConfig, report: WriterReport, database_node: str, redis_node: str) -> dict[str, list[Any]]:
    """The acknowledged writes the serving database (rows) and the serving Redis (session keys) do not have."""
    import psycopg
    import redis

    from erlmcp_dr.lab import app_server as labapp

    # The writes acknowledged so far, taken before reading the servers: a writer still running keeps adding writes
    # acknowledged after the read, which the read could not see (they are not lost, they are later).
    acknowledged = list(report.acknowledged)
    with psycopg.connect(autocommit=True, **cfg.node(database_node).conn_params()) as conn:
        present = {(row[0], row[1]) for row in conn.execute(f"SELECT id, session_id FROM {labapp.TABLE}").fetchall()}
    params = cfg.redis_node(redis_node).conn_params()
    client = redis.Redis(host=params["host"], port=params["port"], password=params["password"],
                         socket_connect_timeout=3, socket_timeout=30)
    try:
        lacking = [write.session_key for write in acknowledged if not client.exists(write.session_key)]
    finally:
        client.close()
    return {"rows": [write.row_id for write in acknowledged if (write.row_id, write.session_id) not in present],
            "sessions": lacking}


@dataclass
class PrimariesReport(RoleReport):
    @property
    def max_primaries(self) -> int:
        return self.most_at_once

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "max_primaries": self.max_primaries,
                "rounds_with_two_primaries": len(self.split_rounds)}


class RedisPrimariesSampler(RoleSampler):
    THREAD_NAME = "redis-primaries-sampler"

    def __init__(self, cfg: LabConfig, interval: float = 0.01) -> None:
        import redis

        super().__init__({node.name: node.conn_params() for node in cfg.redis_nodes}, interval, PrimariesReport())
        self.ERRORS = (redis.RedisError, OSError)

    def connect(self, params: dict[str, Any]) -> Any:
        import redis

        return redis.Redis(host=params["host"], port=params["port"], password=params["password"],
                           socket_connect_timeout=1, socket_timeout=1)

    def holds(self, conn: Any) -> bool:
        return conn.info("replication").get("role") == "master"
