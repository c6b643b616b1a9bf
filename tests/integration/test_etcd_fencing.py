"""Issue 22, Part 1: fencing everywhere a state change happens. A real runbook (not a fixture playbook) run by plain
ansible-playbook takes its run lock in three real etcd members, then its controller freezes (SIGSTOP of the run and
of its lease keeper) past the lease's TTL while another controller takes the lock; when it resumes (SIGCONT), its
next state-changing step is refused and nothing changes: for PostgreSQL (database_failover: pg_promote's armed
fence-and-promote) and for Redis (redis_failover: erlmcp.dr.lock_fence before the shipped redis_promote).

The run is held right after its lock is taken by a test callback (tests/fixtures/lock/callbacks/pause_after_lock.py)
that blocks the ansible-playbook process itself, so the freeze lands between the take and the next step every time,
whatever the machine's load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runbook_helpers import VENV_BIN, inventory_copy, playbook_env, redis_client, topology

from erlmcp_dr import paths
from erlmcp_dr.lab import etcd as lab_etcd
from erlmcp_dr.lab import lifecycle as lab

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402

CALLBACKS = Path(__file__).resolve().parents[1] / "fixtures" / "lock" / "callbacks"
TTL = 3
DEADLINE = 180  # a hang guard for every awaited condition, never a timing assertion
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def etcd() -> Iterator[lab_etcd.EtcdCluster]:
    with lab_etcd.temporary_cluster("erlmcp-dr-etcd-fence-") as cluster:
        yield cluster


class PausedRun:
    """ansible-playbook of one runbook, in its own process group, held by the test callback after `pause_after`."""

    def __init__(self, tmp: Path, inventory: Path, runbook: str, extravar: str, pause_after: str) -> None:
        self.tmp, self.locks = tmp, tmp / "locks"
        self.signal_file, self.proceed_file = tmp / f"{runbook}.paused", tmp / f"{runbook}.proceed"
        self.output = tmp / f"{runbook}.out"
        env = dict(playbook_env(), ERLMCP_DR_LOCK_DIR=str(self.locks), ANSIBLE_DEPRECATION_WARNINGS="0",
                   ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS),
                   ANSIBLE_CALLBACKS_ENABLED="erlmcp.dr.audit_trail,pause_after_lock",
                   PAUSE_AFTER_ACTION=pause_after, PAUSE_SIGNAL_FILE=str(self.signal_file),
                   PAUSE_PROCEED_FILE=str(self.proceed_file))
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory),
                str(paths.collection_root() / "playbooks" / f"{runbook}.yml"), "-e", extravar]
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)

    def held_note(self) -> dict[str, Any] | None:
        """The run's note of the etcd lock it holds (its key, fencing token, lease and keeper), once it is paused."""
        if self.proc.poll() is not None:
            raise AssertionError(f"the run ended (rc={self.proc.returncode}) before it paused:\n{self.text()}")
        if not self.signal_file.exists():
            return None
        notes = list((self.locks / _lock_etcd.HELD_DIR_NAME).glob(f"held-{self.proc.pid}-*.json"))
        assert len(notes) == 1, notes
        return json.loads(notes[0].read_text())

    def text(self) -> str:
        return " ".join(self.output.read_text().split())

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=DEADLINE)


def redis_roles(cfg: lab.LabConfig) -> dict[str, str]:
    roles = {}
    for node in cfg.redis_nodes:
        with redis_client(cfg, node.name) as client:
            roles[node.name] = client.info("replication")["role"]
    return roles


RUNBOOKS = (  # runbook, its extra var, the action after which the test callback holds it (its lock is taken then)
    ("database_failover", "candidate=pg-c", "erlmcp.dr.pg_begin"),
    ("redis_failover", "candidate=redis-b", "erlmcp.dr.redis_begin"),
)


def test_controllers_paused_past_their_lease_are_refused_at_their_next_state_change(fresh_lab, home, tmp_path, etcd):
    """Both runbooks at once, on one lab (they lock different keys): each is frozen (the run and its keeper) until
    its lease expired, another controller takes its lock, and it is resumed."""
    inventory = inventory_copy(fresh_lab, "etcd-fenced", lambda data: data["all"]["vars"].update(
        etcd.inventory_vars(TTL)))
    databases, redis = topology(fresh_lab), redis_roles(fresh_lab)
    other = _lock.make_store(_lock.store_settings(dict(etcd.inventory_vars(600)), environ={}))
    runs = [PausedRun(tmp_path, inventory, *runbook) for runbook in RUNBOOKS]
    try:
        notes = [wait_for(run.held_note, DEADLINE, interval=0.1, what="the run holding its lock, paused")[0]
                 for run in runs]
        for run, note in zip(runs, notes, strict=True):
            os.killpg(run.proc.pid, signal.SIGSTOP)
            os.kill(note["keeper_pid"], signal.SIGSTOP)
        for note in notes:
            key = note["key"]
            wait_for(lambda key=key: other.inspect(key, "other")["decision"] == _lock.TAKE, DEADLINE,
                     interval=0.1, what="the frozen run's lease expired")
            taken = other.acquire(_lock.holder_record(note["key"], "other-controller", os.getpid(), 60))
            assert taken["decision"] == _lock.TAKE and taken["record"]["token"] > note["token"]
        for run, note in zip(runs, notes, strict=True):
            run.proceed_file.touch()
            os.kill(note["keeper_pid"], signal.SIGCONT)
            os.killpg(run.proc.pid, signal.SIGCONT)
        codes = [run.proc.wait(timeout=DEADLINE) for run in runs]
    finally:
        for run in runs:
            run.stop()
    assert codes == [2, 2], [run.text() for run in runs]
    for run, note in zip(runs, notes, strict=True):
        out = run.text()
        assert "refused before changing anything" in out and f"fencing token {note['token']}" in out, out
    assert topology(fresh_lab) == databases and redis_roles(fresh_lab) == redis  # no role changed anywhere
    for note in notes:  # the resumed runs' releases did not touch the new holder's keys
        assert other.inspect(note["key"], "other-controller")["decision"] == _lock.HELD
        other.release(note["key"], "other-controller")

    # Run again (nothing paused): it does what the refused run did not, and its token is recorded where the changes
    # land: the audit trail's record of each engine step, and the application's config.
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory),
            str(paths.collection_root() / "playbooks" / "database_failover.yml"), "-e", "candidate=pg-c"]
    env = dict(playbook_env(), ERLMCP_DR_LOCK_DIR=str(tmp_path / "locks"))
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=DEADLINE)
    assert again.returncode == 0, again.stdout[-3000:]
    steps = [record for record in trail(home) if record["kind"] == "step" and record["runbook"] == "database_failover"]
    tokens = {record["action"]: record["facts"].get("fencing_tokens") for record in steps}
    key = notes[0]["key"]
    token = tokens["erlmcp.dr.pg_promote"][key]
    assert token > notes[0]["token"] and tokens["erlmcp.dr.app_db_config"] == {key: token}, tokens
    app_config = json.loads((fresh_lab.root / "app" / "database.json").read_text())["database"]
    assert app_config["primary_node"] == "pg-c" and app_config["fencing_token"] == token


def trail(home: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()]
