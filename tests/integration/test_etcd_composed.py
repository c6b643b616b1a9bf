"""Issues 17 and 22: one writer for a whole regional move across controllers that share nothing but etcd (three
real members on loopback).

- Two controllers (each its own HOME, lock folder, state folder and inventory copy; the same lab, the same etcd)
  start regional_failover at once: exactly one holds every target's key and runs, the other exits 3 naming it before
  anything changed; a single-system runbook from the second controller during the move exits 3 too (region a is
  down: the unplanned move). The move then
  completes, its children's changing steps ran under the move's fencing tokens, and it lets every key go.
- A move that loses its lease mid-way (its keepers frozen past the TTL, as a paused controller's are) does not start
  its next step; before the point of no return the engine undoes under the lock taken back (new tokens), or, when
  another controller took a key meanwhile, runs no undo and names that controller. An etcd this controller cannot
  reach stops the move the same way (fails closed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import dns_answers, lab_inventory, new_lab
from regional_kill import MOVE, kill_run_tree, process_state, redis_primaries, writable_nodes
from runbook_helpers import (
    CLI_HANG_GUARD,
    DEADLINE,
    inventory_copy,
    runbook_command,
    venv_path,
    wait_for,
)

from erlmcp_dr import paths
from erlmcp_dr.compose import engine, journal, move_lock, spec
from erlmcp_dr.compose import inventory as compose_inventory
from erlmcp_dr.compose import run as composed
from erlmcp_dr.compose.engine import Engine, StepOutcome
from erlmcp_dr.lab import etcd as lab_etcd
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import regions as lab_regions

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402

pytestmark = pytest.mark.integration

# The winner stops itself at its first boundary (no change yet) while the other controller is turned away; a
# stopped process's keeper does not renew its lease, so the lease must outlive those refusals: a hang guard.
HOLD_TTL = 600
LOST_TTL = 2  # the shortest lease etcd grants: the lost-lease cases wait for it to expire
CHANGING_CHILDREN = ("redis_failover", "database_failover", "dns_cutover")


@pytest.fixture(scope="module")
def etcd() -> Iterator[lab_etcd.EtcdCluster]:
    with lab_etcd.temporary_cluster("erlmcp-dr-etcd-move-") as cluster:
        yield cluster


def holders(cluster: lab_etcd.EtcdCluster) -> dict[str, dict[str, Any]]:
    """Every run lock key in etcd now, with its holder record, fencing token and lease (a linearizable read)."""
    settings = _lock.store_settings(dict(cluster.inventory_vars()), environ={})
    prefix = settings["prefix"]
    answer = _lock_etcd.EtcdClient(settings).call("/kv/range", _lock_etcd.prefix_range(prefix))
    return {_lock_etcd.unb64(kv["key"])[len(prefix):]: _lock_etcd.kv_holder(kv) for kv in answer.get("kvs") or []}


class Controller:
    """A controller that shares nothing with another but the lab and etcd: its own HOME (runs, audit trail), lock
    folder (where the etcd store keeps its notes), state folder and inventory copy."""

    def __init__(self, cfg: lab.LabConfig, root: Path, cluster: lab_etcd.EtcdCluster) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.inventory = inventory_copy(cfg, f"controller-{root.name}", lambda data: data["all"]["vars"].update(
            cluster.inventory_vars(HOLD_TTL), dr_lock_dir=str(root / "locks")))
        self.env = dict(os.environ, PATH=venv_path(), ERLMCP_DR_HOME=str(root / "home"),
                        ERLMCP_DR_LOCK_DIR=str(root / "locks"), XDG_STATE_HOME=str(root / "state"))
        self.proc: subprocess.Popen | None = None

    def start_move(self) -> None:
        """regional_failover, stopping itself at its first boundary (before any step) if it gets the locks."""
        env = dict(self.env, **{composed.STOP_AT_BOUNDARY_ENV: "residency"})
        argv = [*runbook_command(), "run", "regional_failover", "-i", str(self.inventory), *MOVE, "--yes", "--json"]
        with open(self.root / "move.out", "wb") as out, open(self.root / "move.err", "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                         start_new_session=True)

    def settled(self) -> bool:
        assert self.proc is not None
        return self.proc.poll() is not None or process_state(self.proc.pid) == "T"

    def stderr(self) -> str:
        return " ".join((self.root / "move.err").read_text().split())

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*runbook_command(), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              env=self.env, timeout=CLI_HANG_GUARD, check=False)

    def moves(self) -> list[Path]:
        return list((self.root / "home" / "runs").glob("*-regional_failover-*"))

    def audit(self) -> list[dict[str, Any]]:
        trail = self.root / "home" / "audit" / "audit.jsonl"
        return [json.loads(line) for line in trail.read_text().splitlines()] if trail.exists() else []


def outside(cfg: lab.LabConfig) -> dict[str, Any]:
    """What a move changes, read from outside: which databases take writes, the Redis primaries, the DNS answers."""
    return {"writable": writable_nodes(cfg), "redis": redis_primaries(cfg),
            "dns": dns_answers(cfg, "api.erlmcp.lab.")}


def drill_held_its_lock_in_etcd(controller: Controller, keys: set[str]) -> None:
    """dr_drill holds every target's key in the inventory's store (etcd here), like the composed runbooks. With region
    a down its steady state deviates, so it injects nothing; what it held is in its result: each key's fencing token."""
    drill = controller.run("run", "dr_drill", "-i", str(controller.inventory), "-e", "kind=redis_primary", "--yes",
                           "--json")
    assert drill.returncode == 1, (drill.returncode, drill.stderr[-3000:])
    details = json.loads(drill.stdout)["facts"]["summary"]["details"]
    assert details["verdict"] == "deviated" and details["fault"] is None, details["verdict_reason"]
    assert details["lock_store"] == "etcd" and set(details["fencing_tokens"]) == keys, details
    assert all(isinstance(token, int) and token > 0 for token in details["fencing_tokens"].values()), details


def test_two_controllers_sharing_only_etcd_one_move_runs_and_the_other_is_turned_away(etcd, tmp_path: Path) -> None:
    lab_etcd.delete_keys(etcd)
    with new_lab(app=True, dns=True) as cfg:
        assert sorted(lab_regions.fail_region(cfg, "a")["killed"]) == ["app-a", "pg-a", "redis-a"]
        before = outside(cfg)
        assert before["writable"] == [] and before["redis"] == []
        controllers = [Controller(cfg, tmp_path / name, etcd) for name in ("one", "two")]
        expected = set(compose_inventory.read(lab_inventory(cfg)).lock_keys())
        drill_held_its_lock_in_etcd(controllers[0], expected)
        assert outside(cfg) == before and holders(etcd) == {}
        for controller in controllers:  # at once
            controller.start_move()
        try:
            wait_for(lambda: all(c.settled() for c in controllers), CLI_HANG_GUARD, interval=0.1,
                     what="both moves holding the locks (stopped at their first boundary) or turned away")
            running = [c for c in controllers if c.proc.poll() is None]
            assert len(running) == 1, [(c.proc.returncode, c.stderr()) for c in controllers]
            winner, other = running[0], next(c for c in controllers if c is not running[0])
            held = holders(etcd)
            move_id = next(iter(held.values()))["run_id"]
            # every key of the move: the database cluster, the Redis members, the DNS zone, each region's services
            assert set(held) == expected and {h["run_id"] for h in held.values()} == {move_id}, held
            assert [path.name for path in winner.moves()] == [move_id]

            # The other controller: its move refused before it made a run folder, naming the holder.
            assert other.proc.returncode == 3 and move_id in other.stderr(), other.stderr()
            assert other.moves() == []
            # A single-system runbook on a target of the move, from the other controller: refused too.
            single = other.run("run", "database_failover", "-i", str(other.inventory), "-e", "candidate=pg-c",
                               "--yes")
            assert single.returncode == 3 and move_id in single.stderr, (single.returncode, single.stderr[-3000:])
            # A drill from the other controller: its lock is in etcd too (issue 20), so it is turned away as well.
            drill = other.run("run", "dr_drill", "-i", str(other.inventory), "-e", "kind=redis_primary", "--yes")
            assert drill.returncode == 3 and move_id in drill.stderr, (drill.returncode, drill.stderr[-3000:])
            assert outside(cfg) == before  # nothing changed by either refusal (nor by the held move yet)
            assert holders(etcd) == held

            os.kill(winner.proc.pid, signal.SIGCONT)
            rc = winner.proc.wait(timeout=CLI_HANG_GUARD)
        finally:
            for controller in controllers:
                if controller.proc is not None and controller.proc.poll() is None:
                    kill_run_tree(controller.proc)
        result = json.loads((winner.root / "move.out").read_text())
        assert rc == 0, (result.get("error"), winner.stderr()[-3000:])
        assert outside(cfg) == {"writable": ["pg-b"], "redis": ["redis-b"],
                                "dns": {server: ["127.0.1.2"] for server in before["dns"]}}

    # Every changing step of the move's children ran under the move's tokens (their fencing check read them).
    tokens = {key: holder["token"] for key, holder in held.items()}
    checked = [record["facts"]["fencing_tokens"] for record in winner.audit()
               if record.get("kind") == "step" and record.get("runbook") in CHANGING_CHILDREN
               and record.get("facts", {}).get("fencing_tokens")]
    promoted = [record for record in winner.audit() if record.get("kind") == "step"
                and record.get("action") == "erlmcp.dr.pg_promote"]
    assert promoted and all(record["facts"]["fencing_tokens"] for record in promoted), promoted
    assert checked and all(found.items() <= tokens.items() for found in checked), (checked, tokens)
    assert holders(etcd) == {}  # every key let go at the end
    assert not list((winner.root / "locks" / _lock_etcd.HELD_DIR_NAME).glob("held-*.json"))  # children's notes too


# ---------------------------------------------------------------- a lease lost mid-move (real etcd, the real engine)

STEPS = [  # two undoable steps, then the point of no return
    {"id": "s1", "runbook": "one", "undo": {"runbook": "one"}},
    {"id": "s2", "runbook": "two", "undo": {"runbook": "two"}},
    {"id": "s3", "runbook": "three", "point_of_no_return": True},
]
KEYS = ["dns:erlmcp.lab.", "postgres:7"]


def workflow() -> spec.Workflow:
    return spec.load("composed", {"steps": STEPS}, {}, {name: {} for name in ("one", "two", "three")}, {})


def lose_the_lease(held: move_lock.MoveLock, other: Any, take: bool) -> None:
    """What a controller paused past its TTL goes through: its keepers freeze until etcd deleted the keys; then,
    when `take`, another controller takes one of them."""
    keepers = [key.keeper[0] for key in held.held.values()]
    for pid in keepers:
        os.kill(pid, signal.SIGSTOP)
    for key in KEYS:
        wait_for(lambda key=key: other.inspect(key, "other")["decision"] == _lock.TAKE, DEADLINE, interval=0.1,
                 what=f"the lease of {key} expired")
    for pid in keepers:
        os.kill(pid, signal.SIGCONT)
    if take:
        taken = other.acquire(_lock.holder_record("postgres:7", "other-controller", os.getpid(), 60,
                                                  runbook="database_switchover"))
        assert taken["decision"] == _lock.TAKE


class LostLeaseMove:
    """A move of three stand-in steps under the real lock over the move, the real guard and the real engine; its
    lease is lost while step s2 runs (another controller then takes a key, when `taken`)."""

    def __init__(self, cluster: lab_etcd.EtcdCluster, settings: dict[str, Any], other: Any, taken: bool) -> None:
        self.other, self.taken = other, taken
        self.calls: list[tuple[str, str]] = []
        with move_lock.hold(settings, KEYS, "move-1", "regional_failover", "ann", "inv") as held:
            self.held, self.first = held, held.tokens()
            self.old_keepers = [key.keeper[0] for key in held.held.values()]
            self.outcome = Engine(workflow(), {}, held.guard(self.step)).run()
            self.tokens, self.during = held.tokens(), holders(cluster)  # after the engine, before the release
            self.new_keepers = [key.keeper[0] for key in held.held.values()]

    def step(self, step: spec.WorkflowStep, call: spec.Call, arguments: dict, phase: str) -> StepOutcome:
        self.calls.append((step.id, phase))
        if (step.id, phase) == ("s2", "forward"):
            lose_the_lease(self.held, self.other, take=self.taken)
        return StepOutcome(ok=True, summary={"end_state": {"ok": True, "problems": []}}, rc=0)


def test_a_move_that_loses_its_lease_stops_before_its_next_step_and_undoes_only_under_a_live_lock(etcd) -> None:
    settings = _lock.store_settings(dict(etcd.inventory_vars(LOST_TTL)), environ={})
    other = _lock.make_store(_lock.store_settings(dict(etcd.inventory_vars(60)), environ={}))

    # 1. Nobody took the keys meanwhile: s3 does not start; the undo runs under the lock taken back (new tokens).
    lab_etcd.delete_keys(etcd)
    move = LostLeaseMove(etcd, settings, other, taken=False)
    stopped = next(r for r in move.outcome.records if r.step == "s3")
    assert "stopped before this step, which did not start" in stopped.message, stopped.message
    assert f"fencing token {move.first[KEYS[0]]}" in stopped.message, stopped.message
    assert move.outcome.status == engine.UNDONE, move.outcome.message
    assert move.calls == [("s1", "forward"), ("s2", "forward"), ("s2", "undo"), ("s1", "undo")]
    assert {key: h["run_id"] for key, h in move.during.items()} == {key: "move-1" for key in KEYS}
    assert all(move.during[key]["token"] == move.tokens[key] > move.first[key] for key in KEYS), move.during
    assert not set(move.old_keepers) & set(move.new_keepers)
    assert holders(etcd) == {}  # released at the end
    gone = move.old_keepers + move.new_keepers
    wait_for(lambda: all(_lock.process_identity(pid) is None for pid in gone), DEADLINE, interval=0.1,
             what="every keeper of the move ended")

    # 2. Another controller took a key meanwhile: no undo runs, each says so naming it; its lock is left alone.
    lab_etcd.delete_keys(etcd)
    move = LostLeaseMove(etcd, settings, other, taken=True)
    assert move.outcome.status == engine.UNDO_INCOMPLETE, move.outcome.message
    assert move.calls == [("s1", "forward"), ("s2", "forward")]
    undo = [r for r in move.outcome.records if r.phase == "undo"]
    assert [r.step for r in undo] == ["s2", "s1"]
    assert all("the undo was not run" in r.message and "other-controller" in r.message for r in undo), undo
    assert {key: h["run_id"] for key, h in holders(etcd).items()} == {"postgres:7": "other-controller"}
    other.release("postgres:7", "other-controller")

    # 3. etcd unreachable from this controller (a partition: no member answers): fails closed, and says so.
    with move_lock.hold(settings, KEYS, "move-2", "regional_failover", "ann", "inv") as held:
        reachable = held.store
        held.store = _lock.make_store(dict(settings, endpoints=["http://127.0.0.1:9"], timeout=0.2))
        try:
            refusal = held.before_step("forward")
        finally:
            held.store = reachable
        assert "cannot be checked (fails closed)" in refusal and "no etcd member answered" in refusal, refusal
    assert holders(etcd) == {}


def test_a_move_killed_on_this_controller_is_found_once_etcd_let_its_keys_go(etcd, tmp_path: Path) -> None:
    """etcd deletes a killed move's keys itself (its lease expires), so the run that resumes it finds it by its
    journal, still `running`: not while that run's id holds a key, and only for a move on the same targets."""
    lab_etcd.delete_keys(etcd)
    settings = _lock.store_settings(dict(etcd.inventory_vars(LOST_TTL)), environ={})
    runs = tmp_path / "runs"
    killed = "20261206T180000-regional_failover-dead"
    (runs / killed).mkdir(parents=True)
    journal.Journal(run_id=killed, runbook="regional_failover", from_region="a", to_region="b", incident_id="i",
                    locks=KEYS).save(runs / killed)
    elsewhere = "20261206T180001-regional_failover-other"
    (runs / elsewhere).mkdir()
    journal.Journal(run_id=elsewhere, runbook="regional_failover", from_region="a", to_region="b", incident_id="i",
                    locks=["postgres:other-cluster"]).save(runs / elsewhere)

    with move_lock.hold(settings, KEYS[:1], killed, "regional_failover", "ann", "inv"):  # still holding one key
        assert move_lock.gone_holders(settings, KEYS, "regional_failover", runs) == []
    found = move_lock.gone_holders(settings, KEYS, "regional_failover", runs)
    assert found == [{"run_id": killed, "runbook": "regional_failover"}]
    assert journal.unfinished_move(runs, found, "regional_failover", KEYS).run_id == killed
