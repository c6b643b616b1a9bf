"""Two operators at once never make two writable primaries (issue row 1).

The lock lives in the playbook, keyed by the cluster's system identifier, so the CLI, the
Python API, a plain `ansible-playbook` and a second copy of the inventory all meet at it.
A sampler asks every node every 10 ms whether it takes writes during the whole race.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from guard_race import WITNESS_ROUNDS, watch_on
from runbook_helpers import (
    DEADLINE,
    inventory_copy,
    inventory_path,
    runbook_command,
    topology,
    wait_for,
)

from erlmcp_dr import paths
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.probe import WritersSampler

pytestmark = pytest.mark.integration


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(paths.collections_path()),
               ANSIBLE_CONFIG=str(paths.collection_root() / "ansible.cfg"))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    return env


def cli_switchover(inventory: Path, candidate: str) -> subprocess.Popen:
    return subprocess.Popen([*runbook_command(), "run", "database_switchover", "-i", str(inventory),
                             "-e", f"candidate={candidate}", "--yes"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=_env())


def playbook_switchover(inventory: Path, candidate: str) -> subprocess.Popen:
    playbook = paths.collection_root() / "playbooks" / "database_switchover.yml"
    return subprocess.Popen([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                             str(playbook), "-e", f"candidate={candidate}"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=_env())


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, err = proc.communicate(timeout=DEADLINE * 5)
    return proc.returncode, (out or "") + (err or "")


def one_writer_streamed_by_the_rest(cfg: lab.LabConfig) -> str:
    def settled() -> str | None:
        topo = topology(cfg)
        primaries = [name for name, node in topo.items() if node["role"] == "primary"]
        if len(primaries) != 1:
            return None
        others = [node for name, node in topo.items() if name != primaries[0]]
        return primaries[0] if all(n["role"] == "standby" and n["upstream"] == primaries[0] for n in others) else None

    return wait_for(settled, DEADLINE, interval=0.2, what="one primary, every other node streaming from it")[0]


def sampler_for(cfg: lab.LabConfig) -> WritersSampler:
    return WritersSampler({n.name: dict(n.conn_params(), connect_timeout=1) for n in cfg.nodes})


def lock_holder_pid(lock_dir: Path) -> int | None:
    for path in lock_dir.glob("*.lock.json"):
        try:
            return int(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue  # being written or just released
    return None


@contextmanager
def paused(pid: int) -> Iterator[None]:
    """The holder's ansible-playbook stopped (alive, so still the holder) while the second run contends:
    however fast either run is, the second meets a held lock."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def race(cfg: lab.LabConfig, first, second) -> list[tuple[int, str]]:
    """Start `first`; once it holds the lock, hold it there and run `second` to its end; then let the first
    finish."""
    with sampler_for(cfg) as sampler:
        a = first()
        lock_dir = cfg.root / "locks"
        holder = wait_for(lambda: lock_holder_pid(lock_dir) or a.poll() is not None, DEADLINE, interval=0.02,
                          what="the first run holds the lock")[0]
        assert holder is not True, finish(a)
        with paused(holder):
            b = second()
            second_outcome = finish(b)
        outcomes = [finish(a), second_outcome]
        race_rounds = watch_on(lambda: sampler.report.rounds)  # a fast pair is watched on after it ends
    assert sampler.report.max_writable <= 1, f"two writable nodes: {sampler.report.split_rounds[:5]}"
    assert race_rounds > 0 and sampler.report.rounds > WITNESS_ROUNDS
    return outcomes


def test_cli_and_plain_ansible_playbook_meet_at_the_same_lock(fresh_lab, home):
    cfg = fresh_lab
    inventory = inventory_path(cfg)

    (rc_a, out_a), (rc_b, out_b) = race(cfg, lambda: cli_switchover(inventory, "pg-b"),
                                        lambda: playbook_switchover(inventory, "pg-c"))

    assert rc_a == 0, out_a
    assert rc_b != 0, out_b  # turned away while the first run held the lock
    assert "lock" in out_b.lower() and "database_switchover" in out_b, out_b[-3000:]
    assert one_writer_streamed_by_the_rest(cfg) == "pg-b"


def test_two_copies_of_one_inventory_share_the_lock(fresh_lab, home):
    cfg = fresh_lab
    copy = inventory_copy(cfg, "second-copy", lambda data: None)

    (rc_a, out_a), (rc_b, out_b) = race(cfg, lambda: cli_switchover(inventory_path(cfg), "pg-c"),
                                        lambda: cli_switchover(copy, "pg-b"))

    assert rc_a == 0, out_a
    assert rc_b == 3, out_b  # the CLI's "busy" exit code, naming the holder
    assert one_writer_streamed_by_the_rest(cfg) == "pg-c"


def test_two_runs_started_together_never_make_two_writers(fresh_lab, home):
    """No ordering at all: whichever wins, the other is turned away or finds the work done."""
    cfg = fresh_lab
    inventory = inventory_path(cfg)
    procs: list[subprocess.Popen] = []
    with sampler_for(cfg) as sampler:
        starters = [threading.Thread(target=lambda c=c: procs.append(cli_switchover(inventory, c)))
                    for c in ("pg-b", "pg-c")]
        for thread in starters:
            thread.start()
        for thread in starters:
            thread.join()
        outcomes = [finish(proc) for proc in procs]
    assert sampler.report.max_writable <= 1, f"two writable nodes: {sampler.report.split_rounds[:5]}"
    assert any(rc == 0 for rc, _ in outcomes), outcomes
    assert all(rc in (0, 1, 3) for rc, _ in outcomes), outcomes
    assert one_writer_streamed_by_the_rest(cfg) in ("pg-b", "pg-c")
