"""Two controllers racing to promote: the cluster guard's witness (tests/integration/test_cluster_guard.py and
benchmarks/race_pairs.py share it).

Each controller has its own lock folder (ERLMCP_DR_LOCK_DIR and its inventory's dr_lock_dir) and its own
ERLMCP_DR_HOME, so the run lock never meets: only the guard that lives with the cluster can keep them apart. A
sampler asks every node every 10 ms whether it takes writes for the whole pair. Imports only erlmcp_dr, psycopg and
yaml (the benchmark runs it outside pytest).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psycopg
import yaml

from erlmcp_dr import paths
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable
from erlmcp_dr.probe import WritersSampler

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._guards import postgres_guard as _cluster_guard  # noqa: E402

DEADLINE = 90  # a hang guard for every awaited condition, never a timing assertion
# The rounds the writers sampler (the witness) must have taken for a pair to count. A race can end before the sampler
# has looked that often (the warm start made a racing failover pair last about a second): it then watches on, after
# the runs, until it has (watch_on).
WITNESS_ROUNDS = 50
RUN_HANG_GUARD = 900
VENV_BIN = Path(sys.executable).parent


@dataclass
class Controller:
    """One controller: its own lock folder, home and copy of the inventory."""

    name: str
    root: Path
    inventory: Path

    @classmethod
    def make(cls, cfg: lab.LabConfig, name: str, root: Path) -> Controller:
        root.mkdir(parents=True, exist_ok=True)
        data = yaml.safe_load((cfg.root / "inventory" / "hosts.yml").read_text())
        data["all"].setdefault("vars", {})["dr_lock_dir"] = str(root / "locks")
        inventory = root / "inventory" / "hosts.yml"
        inventory.parent.mkdir(parents=True, exist_ok=True)
        inventory.write_text("---\n" + yaml.safe_dump(data, sort_keys=False))
        return cls(name, root, inventory)

    @property
    def lock_dir(self) -> Path:
        return self.root / "locks"

    def env(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_STDOUT_CALLBACK="default", ERLMCP_DR_HOME=str(self.root / "home"),
                   ERLMCP_DR_LOCK_DIR=str(self.lock_dir), ANSIBLE_COLLECTIONS_PATH=str(paths.collections_path()),
                   ANSIBLE_CONFIG=str(paths.collection_root() / "ansible.cfg"))
        env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", os.defpath)])
        return env

    def start(self, entry: str, runbook: str, extravars: list[str]) -> subprocess.Popen:
        """`entry`: cli (runbook run ... --yes --json) or playbook (plain ansible-playbook)."""
        if entry == "cli":
            runbook_cli = VENV_BIN / "runbook"
            argv = [str(runbook_cli)] if runbook_cli.exists() else [sys.executable, "-m", "erlmcp_dr"]
            argv += ["run", runbook, "-i", str(self.inventory), "--yes", "--json"]
        else:
            argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory),
                    str(paths.collection_root() / "playbooks" / f"{runbook}.yml")]
        for extravar in extravars:
            argv += ["-e", extravar]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True, env=self.env(), start_new_session=True)

    def run_results(self) -> str:
        """The result.json of every run this controller made (the CLI prints a busy run's cause only there)."""
        return "".join("\n" + path.read_text() for path in sorted((self.root / "home").glob("runs/*/result.json")))

    def playbook_pid(self) -> int | None:
        """The run's ansible-playbook process, as its run lock's holder record names it."""
        for path in self.lock_dir.glob("*.lock.json"):
            try:
                return int(json.loads(path.read_text())["pid"])
            except (OSError, ValueError, KeyError):
                continue  # being written or just released
        return None


@dataclass
class RunOutcome:
    controller: str
    entry: str
    rc: int
    output: str
    promoted: bool
    refusal: str = "another run holds the cluster guard"  # what the guard's refusal says (redis_guard_race: Redis's)

    @property
    def refused_by_guard(self) -> bool:
        return self.refusal in self.output


@dataclass
class PairOutcome:
    kind: str
    entries: tuple[str, str]
    runs: list[RunOutcome]
    sampler_rounds: int
    race_rounds: int  # of sampler_rounds, those taken before both runs had ended
    max_writable: int
    two_writer_rounds: int
    timeline_before: int
    timeline_after: int | None
    primaries_after: list[str]
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def promotions(self) -> int:
        return sum(1 for run in self.runs if run.promoted)

    def to_dict(self) -> dict[str, Any]:
        return dict(kind=self.kind, entries=list(self.entries), rcs=[run.rc for run in self.runs],
                    promoted=[run.promoted for run in self.runs],
                    refused_by_guard=[run.refused_by_guard for run in self.runs], promotions=self.promotions,
                    sampler_rounds=self.sampler_rounds, race_rounds=self.race_rounds, max_writable=self.max_writable,
                    two_writer_rounds=self.two_writer_rounds, timeline_before=self.timeline_before,
                    timeline_after=self.timeline_after, primaries_after=self.primaries_after,
                    seconds=round(self.seconds, 2), notes=self.notes)


def _promoted(entry: str, output: str) -> bool:
    """Whether this run's fence-and-promote step promoted: the CLI's summary, or ansible-playbook's result line."""
    if entry == "cli":
        try:
            result = json.loads(output[output.index("{"):])
        except ValueError:
            return False
        details = ((result.get("facts") or {}).get("summary") or {}).get("details") or {}  # the envelope's
        return bool(details.get("promoted_under_guard")) and any(
            step["task"].startswith("Fence the old primary") and step["changed"] and not step["failed"]
            for step in result.get("steps") or [])
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("TASK [") and "Fence the old primary" in line and "promote the candidate" in line:
            return any(later.startswith("changed:") for later in lines[index + 1:index + 4])
    return False


def guard_holders(cfg: lab.LabConfig) -> list[str]:
    """The application names of the sessions that hold the guard, on every member that answers."""
    found = []
    for node in cfg.nodes:
        try:
            with psycopg.connect(autocommit=True, **dict(node.conn_params(), connect_timeout=1)) as conn:
                found += [row[0] for row in conn.execute(_cluster_guard._HOLDERS_SQL,
                                                         (_cluster_guard.GUARD_CLASSID, _cluster_guard.GUARD_OBJID))]
        except psycopg.Error:
            continue
    return found


def timelines(cfg: lab.LabConfig) -> dict[str, Any]:
    return {row["name"]: (row["role"], row["timeline"]) for row in lab.status(cfg)["nodes"]}


def crash_primary(cfg: lab.LabConfig, node: str) -> None:
    """kill -9 of the node's postmaster: a failed primary (its children end with it)."""
    pid = int(cfg.node(node).data_dir.joinpath("postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: timelines(cfg)[node][0] != "primary", DEADLINE, interval=0.05, what=f"{node} down")


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=RUN_HANG_GUARD)
    return out or ""


def run_pair(controllers: list[Controller], entries: tuple[str, str], runbook: str, extravars: list[list[str]], *,
             frozen: bool, holds: Callable[[], Any], notes: list[str]) -> tuple[list[subprocess.Popen], list[str]]:
    """Run `runbook` from both controllers (extravars[i] for the i-th); the processes and their outputs.

    frozen: the first starts alone; once it holds the guard (`holds()`) its ansible-playbook is stopped (SIGSTOP:
    alive, so its guard still held) while the second runs to its end, then it goes on - whatever the machine's
    speed, the second meets a held guard. Not frozen: both start at the same moment, a true race.
    """
    if frozen:
        first = controllers[0].start(entries[0], runbook, extravars[0])
        wait_for(lambda: holds() or first.poll() is not None, DEADLINE, interval=0.005,
                 what="the first run holds the guard")
        pid = controllers[0].playbook_pid()
        if first.poll() is None and pid:
            os.kill(pid, signal.SIGSTOP)
        else:
            notes.append("the first run could not be frozen (it ended, or its lock record was gone)")
        try:
            second = controllers[1].start(entries[1], runbook, extravars[1])
            second_out = _finish(second)
        finally:
            if pid:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        return [first, second], [_finish(first), second_out]
    started = []
    gate = threading.Barrier(2)

    def start(index: int) -> None:
        gate.wait()
        started.append((index, controllers[index].start(entries[index], runbook, extravars[index])))

    threads = [threading.Thread(target=start, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    procs = [proc for _i, proc in sorted(started, key=lambda item: item[0])]
    return procs, [_finish(proc) for proc in procs]


def watch_on(rounds: Callable[[], int]) -> int:
    """Called once both runs have ended, the sampler still running: returns its rounds so far (the race's), then
    lets it watch on until it has taken WITNESS_ROUNDS. What it sees after the runs counts as much: a second
    promotion that comes late (a loser that went on after the winner ended) shows there."""
    during_race = rounds()
    wait_for(lambda: rounds() > WITNESS_ROUNDS, DEADLINE, interval=0.01, what="the witness's rounds after the race")
    return during_race


def holder_pids(controller: Controller, script: str) -> list[int]:
    """The guard holders (processes running `script`) started by this controller's runs: their environment names
    its home, or a run marker (a run's private folder) inside it. A holder forked from a warm run's worker shows the
    environment the zygote started with (docs/speed-warm.md), which has the marker but not ERLMCP_DR_HOME."""
    found = []
    home = controller.root / "home"
    names = (f"ERLMCP_DR_HOME={home}\0".encode(), f"ERLMCP_DR_RUN={home}/".encode())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes() + b"\0"
            if script.encode() in (entry / "cmdline").read_bytes() and any(name in environ for name in names):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def race_pair(cfg: lab.LabConfig, root: Path, kind: str, entries: tuple[str, str], candidates: tuple[str, str],
              *, frozen: bool) -> PairOutcome:
    """Two runs of database_<kind> from two controllers on `cfg`, candidates[0] for the first, [1] for the second
    (frozen: see run_pair)."""
    runbook = f"database_{kind}"
    controllers = [Controller.make(cfg, name, root / name) for name in ("controller-a", "controller-b")]
    before = timelines(cfg)
    timeline_before = max(t for _role, t in before.values() if t)
    extravars = [[f"candidate={c}"] for c in candidates]
    started = time.monotonic()
    notes: list[str] = []
    with WritersSampler({n.name: dict(n.conn_params(), connect_timeout=1) for n in cfg.nodes}) as sampler:
        procs, outputs = run_pair(controllers, entries, runbook, extravars, frozen=frozen,
                                  holds=lambda: guard_holders(cfg), notes=notes)
        race_rounds = watch_on(lambda: sampler.report.rounds)
    after = timelines(cfg)
    primaries = sorted(name for name, (role, _t) in after.items() if role == "primary")
    runs = [RunOutcome(c.name, e, p.returncode, out + c.run_results(), _promoted(e, out))
            for c, e, p, out in zip(controllers, entries, procs, outputs, strict=True)]
    return PairOutcome(kind=kind, entries=entries, runs=runs, sampler_rounds=sampler.report.rounds,
                       race_rounds=race_rounds, max_writable=sampler.report.max_writable,
                       two_writer_rounds=len(sampler.report.split_rounds),
                       timeline_before=timeline_before,
                       timeline_after=max((t for name, (_r, t) in after.items() if name in primaries and t),
                                          default=None),
                       primaries_after=primaries, seconds=time.monotonic() - started, notes=notes)


def one_writer_one_promotion(pair: Any) -> tuple[RunOutcome, RunOutcome, str]:
    """What every racing pair must show (PostgreSQL's and Redis's): enough samples, never two writable primaries, one
    promotion, one primary after, the winner rc 0 and the loser turned away by the guard, saying so. Returns the
    winner, the loser and both runs' outputs (for the caller's own assertions)."""
    described = "\n".join(f"--- {run.controller} ({run.entry}) rc={run.rc}\n{run.output[-2500:]}" for run in pair.runs)
    assert pair.race_rounds > 0 and pair.sampler_rounds > WITNESS_ROUNDS, described  # it watched the race, and on
    assert pair.two_writer_rounds == 0 and pair.max_writable <= 1, f"two writable primaries: {pair.to_dict()}"
    assert pair.promotions == 1, f"{pair.promotions} runs promoted: {pair.to_dict()}\n{described}"
    assert len(pair.primaries_after) == 1, pair.to_dict()
    winner = next(run for run in pair.runs if run.promoted)
    loser = next(run for run in pair.runs if not run.promoted)
    assert winner.rc == 0, described
    assert loser.rc != 0 and loser.refused_by_guard, described
    return winner, loser, described


def prepare(cfg: lab.LabConfig, kind: str) -> tuple[str, str]:
    """The lab as a pair of `kind` finds it (pg-a primary; for a failover, pg-a crashed): the two candidates."""
    if kind == "failover":
        crash_primary(cfg, "pg-a")
    return ("pg-b", "pg-c")
