"""Two controllers racing to fail Redis over: the Redis guard's witness (tests/integration/test_redis_guard.py and
benchmarks/redis_race_pairs.py share it).

Each controller has its own lock folder and ERLMCP_DR_HOME (guard_race.Controller), so the run lock never meets:
only the guard that lives with the Redis members can keep them apart. A sampler sends ROLE to every member every
10 ms for the whole pair and counts the rounds where two members answer `master`. Imports only erlmcp_dr, redis and
the PostgreSQL race's controller (the benchmark runs it outside pytest).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from guard_race import Controller, RunOutcome, run_pair, watch_on

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._guards import redis_guard as _redis_guard  # noqa: E402

DEADLINE = 90  # a hang guard for every awaited condition, never a timing assertion
NODES = ("redis-a", "redis-b", "redis-c")
REFUSAL = "another run holds the Redis guard"
parse_name = _redis_guard.parse_name


def client(cfg: lab.LabConfig, node: str, timeout: float = 1.0) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=cfg.redis_node(node).port, password=lab.LAB_PASSWORD,
                       decode_responses=True, socket_connect_timeout=timeout, socket_timeout=timeout)


def roles(cfg: lab.LabConfig) -> dict[str, str]:
    """Each member's ROLE (master / slave), or `down`."""
    found = {}
    for node in NODES:
        try:
            with client(cfg, node) as conn:
                found[node] = conn.execute_command("ROLE")[0]
        except redis.RedisError:
            found[node] = "down"
    return found


def guard_names(cfg: lab.LabConfig) -> list[str]:
    """The names of the guard connections on every member that answers."""
    names = []
    for node in NODES:
        with contextlib.suppress(redis.RedisError), client(cfg, node) as conn:
            names += [row["name"] for row in conn.client_list() if _redis_guard.parse_name(row.get("name"))]
    return names


def holding(cfg: lab.LabConfig) -> bool:
    return any(_redis_guard.parse_name(name)[0] == _redis_guard.HOLD for name in guard_names(cfg))


class RoleSampler:
    """ROLE on every member every 10 ms, on connections of its own: two_writer_rounds counts the rounds where two
    members answered master, the first still master when read again after the second (so at the same time);
    max_writable is the most members seen taking writes at once."""

    def __init__(self, cfg: lab.LabConfig) -> None:
        self.clients = {node: client(cfg, node, timeout=0.5) for node in NODES}
        self.rounds = 0
        self.two_writer_rounds = 0
        self.max_writable = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _masters(self) -> list[str]:
        found = []
        for name, conn in self.clients.items():
            with contextlib.suppress(redis.RedisError):  # a member that does not answer takes no writes
                if conn.execute_command("ROLE")[0] == "master":
                    found.append(name)
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            masters = self._masters()
            self.rounds += 1
            # One round reads the members one after the other: during a FAILOVER the old primary can be read as
            # master just before it hands over, the candidate just after. Two at once only when the first is read
            # master again after the second was.
            at_once = len(masters) if len(masters) < 2 or masters[0] in self._masters() else 1
            self.max_writable = max(self.max_writable, at_once)
            if at_once > 1:
                self.two_writer_rounds += 1

    def __enter__(self) -> RoleSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)
        for conn in self.clients.values():
            conn.close()


@dataclass
class PairOutcome:
    kind: str
    mode: str
    entries: tuple[str, str]
    runs: list[RunOutcome]
    sampler_rounds: int
    race_rounds: int  # of sampler_rounds, those taken before both runs had ended
    max_writable: int
    two_writer_rounds: int
    primary_before: str
    primaries_after: list[str]
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def promotions(self) -> int:
        return sum(1 for run in self.runs if run.promoted)

    def to_dict(self) -> dict[str, Any]:
        return dict(kind=self.kind, mode=self.mode, entries=list(self.entries), rcs=[run.rc for run in self.runs],
                    promoted=[run.promoted for run in self.runs],
                    refused_by_guard=[run.refused_by_guard for run in self.runs], promotions=self.promotions,
                    sampler_rounds=self.sampler_rounds, race_rounds=self.race_rounds, max_writable=self.max_writable,
                    two_writer_rounds=self.two_writer_rounds, primary_before=self.primary_before,
                    primaries_after=self.primaries_after, seconds=round(self.seconds, 2), notes=self.notes)


def promoted(entry: str, output: str) -> bool:
    """Whether this run's redis_promote step promoted: the CLI's summary (promoted under its guard), or
    ansible-playbook's result line for that step (its only change on a lab where the candidate was a replica)."""
    if entry == "cli":
        try:
            result = json.loads(output[output.index("{"):])
        except ValueError:
            return False
        details = ((result.get("facts") or {}).get("summary") or {}).get("details") or {}
        return bool(details.get("promoted")) and bool(details.get("promoted_under_guard"))
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("TASK [") and "Promote the candidate" in line:
            return any(later.startswith("changed:") for later in lines[index + 1:index + 4])
    return False


def crash_primary(cfg: lab.LabConfig, node: str = "redis-a") -> None:
    """kill -9 of the member's redis-server: an unplanned failover's starting point."""
    os.kill(int(cfg.redis_node(node).pid_file.read_text().split()[0]), signal.SIGKILL)
    wait_for(lambda: roles(cfg)[node] == "down", DEADLINE, interval=0.02, what=f"{node} down")


def prepare(cfg: lab.LabConfig, kind: str) -> tuple[str, str]:
    """The lab as a pair of `kind` finds it (redis-a primary; unplanned: redis-a killed): the two candidates."""
    if kind == "unplanned":
        crash_primary(cfg)
    return ("redis-b", "redis-c")


def race_pair(cfg: lab.LabConfig, root: Path, kind: str, entries: tuple[str, str], candidates: tuple[str, str],
              *, frozen: bool) -> PairOutcome:
    """Two redis_failover runs from two controllers on `cfg`, candidates[0] for the first, [1] for the second.
    kind: planned (the primary up) or unplanned (prepared: the primary killed); frozen: see guard_race.run_pair."""
    controllers = [Controller.make(cfg, name, root / name) for name in ("controller-a", "controller-b")]
    extravars = [[f"candidate={c}"] for c in candidates]
    before = [node for node, role in roles(cfg).items() if role == "master"]
    started = time.monotonic()
    notes: list[str] = []
    with RoleSampler(cfg) as sampler:
        procs, outputs = run_pair(controllers, entries, "redis_failover", extravars, frozen=frozen,
                                  holds=lambda: holding(cfg), notes=notes)
        race_rounds = watch_on(lambda: sampler.rounds)
    after = roles(cfg)
    runs = [RunOutcome(c.name, e, p.returncode, out + c.run_results(), promoted(e, out), refusal=REFUSAL)
            for c, e, p, out in zip(controllers, entries, procs, outputs, strict=True)]
    return PairOutcome(kind=kind, mode="frozen" if frozen else "race", entries=entries, runs=runs,
                       sampler_rounds=sampler.rounds, race_rounds=race_rounds, max_writable=sampler.max_writable,
                       two_writer_rounds=sampler.two_writer_rounds, primary_before=",".join(before) or "none",
                       primaries_after=sorted(n for n, role in after.items() if role == "master"),
                       seconds=time.monotonic() - started, notes=notes)
