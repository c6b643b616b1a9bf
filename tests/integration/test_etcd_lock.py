"""The run lock in etcd (dr_lock_store: etcd, module_utils/_lock/etcd.py) against three real etcd members on loopback
(lab/etcd.py), one cluster per test session, its keys deleted between tests: races from several processes through the
store's API and through ansible-playbook (checked against etcd's revision history), a holder killed with -9, a
holder paused past its lease, members lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_entry_race import ENTRIES, entry_rounds
from etcd_race import api_race, holders_in_history, revision
from runbook_helpers import (
    dns_answers,
    dns_args,
    failure_message,
    inventory_copy,
    kill_run_tree,
    new_dns_lab,
    playbook_env,
    run_json,
    topology,
)

from erlmcp_dr import paths
from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import etcd as lab_etcd

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness as _readiness  # noqa: E402

PLAYBOOK = Path(__file__).resolve().parents[1] / "fixtures" / "lock" / "etcd_hold.yml"
KEY = "postgres:7301234567890123456"
TTL = 3
DEADLINE = 120  # a hang guard for every awaited condition, never a timing assertion
API_PROCESSES, API_ATTEMPTS = 3, 20  # the benchmark (benchmarks/etcd_lock_race.py) makes 1,000 attempts
PLAYBOOK_PROCESSES, PLAYBOOK_ATTEMPTS = 3, 1
pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- the cluster, the store, etcd's history


@pytest.fixture(scope="session")
def etcd() -> Iterator[lab_etcd.EtcdCluster]:
    with lab_etcd.temporary_cluster("erlmcp-dr-etcd-") as cluster:
        yield cluster


@pytest.fixture
def cluster(etcd: lab_etcd.EtcdCluster) -> Iterator[lab_etcd.EtcdCluster]:
    """The session's cluster with every member running and no key; members a test stopped are started again."""
    lab_etcd.up(etcd)
    lab_etcd.delete_keys(etcd)
    yield etcd
    lab_etcd.up(etcd)
    lab_etcd.delete_keys(etcd)


def settings(cluster: lab_etcd.EtcdCluster, **more: Any) -> dict[str, Any]:
    return _lock.store_settings(dict(cluster.inventory_vars(TTL), **more), environ={})


def lease_ttl(cluster: lab_etcd.EtcdCluster, lease_id: int) -> tuple[int, int]:
    return _lock_etcd.EtcdClient(settings(cluster)).time_to_live(lease_id)


# ---------------------------------------------------------------- ansible-playbook runs of the fixture


@pytest.fixture
def inventory(tmp_path: Path, cluster: lab_etcd.EtcdCluster) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {
        "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
        "vars": cluster.inventory_vars(TTL)}}))
    return path


def run_env(tmp_path: Path) -> dict[str, str]:
    return dict(playbook_env(), ERLMCP_DR_LOCK_DIR=str(tmp_path / "locks"), ANSIBLE_DEPRECATION_WARNINGS="0")


class Playbook:
    """One ansible-playbook process of the fixture, in its own process group."""

    def __init__(self, tmp: Path, name: str, inventory: Path, *extra: str) -> None:
        self.signal_file = tmp / f"{name}.signal.json"
        self.output = tmp / f"{name}.out"
        args = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), str(PLAYBOOK),
                "-e", f"lock_key={KEY}", "-e", f"signal_file={self.signal_file}", *extra]
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=run_env(tmp),
                                         start_new_session=True)

    def taken(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.signal_file.read_text())
        except (OSError, ValueError):
            return None

    def wait(self) -> int:
        return self.proc.wait(timeout=DEADLINE)

    def text(self) -> str:
        return " ".join(self.output.read_text().split())


@pytest.fixture
def started() -> Iterator[list[Playbook]]:
    runs: list[Playbook] = []
    yield runs
    for run in runs:
        if run.proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.killpg(run.proc.pid, sig)
                except ProcessLookupError:
                    pass
            run.proc.wait(timeout=DEADLINE)


def keeper_of(tmp_path: Path, run: Playbook) -> int:
    """The keeper of the lease the run holds (from the run's held note)."""
    notes = list((tmp_path / "locks" / _lock_etcd.HELD_DIR_NAME).glob(f"held-{run.proc.pid}-*.json"))
    assert len(notes) == 1, notes
    return json.loads(notes[0].read_text())["keeper_pid"]


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# ---------------------------------------------------------------- races


def test_racing_processes_through_the_api_one_holder_at_every_revision(cluster, tmp_path):
    race = api_race(settings(cluster), KEY, API_PROCESSES, API_ATTEMPTS, str(tmp_path / "inside"))
    assert race["exit_codes"] == [0] * API_PROCESSES
    assert race["doubles"] == 0
    assert race["tokens"], "no process ever took the lock"
    assert race["history"] == race["tokens"]  # every take is one holder in etcd's history, and nothing else held it


def test_racing_ansible_playbook_runs_one_holder_and_no_double_execution(cluster, inventory, tmp_path, started):
    critical = tmp_path / "critical"
    critical.mkdir()
    first = revision(settings(cluster)) + 1
    codes: list[int] = []
    for round_ in range(PLAYBOOK_ATTEMPTS):
        runs = [Playbook(tmp_path, f"race-{round_}-{i}", inventory, "-e", f"critical_dir={critical}")
                for i in range(PLAYBOOK_PROCESSES)]
        started.extend(runs)
        codes += [run.wait() for run in runs]
    assert set(codes) <= {0, 2}, [run.text() for run in started]
    for run in started:
        if run.proc.returncode == 2:
            assert "Another run holds the run lock for " + KEY in run.text(), run.text()
    tokens = sorted(int(line) for line in (critical / "tokens").read_text().split())
    assert len(tokens) == codes.count(0) and len(set(tokens)) == len(tokens)
    history = holders_in_history(settings(cluster), _lock_etcd.DEFAULT_PREFIX + KEY, first,
                                 revision(settings(cluster)))
    assert sorted(history) == tokens
    assert not (critical / "inside").exists()
    assert "failed=1" not in " ".join(run.text() for run in started if run.proc.returncode == 0)


def test_racing_every_entry_point_at_once_one_holder_and_no_double_execution(cluster, tmp_path):
    """One controller per entry point (runbook CLI, erlmcp_dr.run(), ansible-playbook, ansible-runner transmit |
    worker | process as AWX runs it), started at once on one key (benchmarks/etcd_lock_race.py --entry-rounds runs
    more rounds)."""
    race = entry_rounds(settings(cluster), tmp_path, KEY, rounds=1, controllers=len(ENTRIES))
    assert [run for run in race["runs"] if run["rc"] != 0 and not run["busy"]] == []  # refused as busy, or ran
    assert race["double_executions"] == 0 and not race["left_inside"]
    assert race["tokens"] and race["history_matches_takes"], race
    assert len(race["tokens"]) + sum(run["busy"] for run in race["runs"]) == len(ENTRIES)


# ---------------------------------------------------------------- a holder killed, a holder paused


def test_a_holder_killed_with_sigkill_loses_the_lock_when_its_lease_expires(cluster, inventory, tmp_path, started):
    holder = Playbook(tmp_path, "killed", inventory, "-e", f"proceed_file={tmp_path / 'never'}")
    started.append(holder)
    taken, _ = wait_for(holder.taken, DEADLINE, what="the run holding the lock")
    lease_id, token = taken["holder"]["lease_id"], taken["token"]
    assert lease_ttl(cluster, lease_id)[1] == TTL  # the lease etcd granted has the inventory's TTL
    keeper = keeper_of(tmp_path, holder)
    kill_run_tree(holder.proc.pid)  # the controller dies: ansible-playbook and its workers, at once
    holder.proc.wait(timeout=DEADLINE)
    wait_for(lambda: gone(keeper), DEADLINE, interval=0.05, what="the keeper stopping with its run")
    store = _lock.make_store(settings(cluster))
    wait_for(lambda: store.inspect(KEY, "next")["decision"] == _lock.TAKE, DEADLINE, interval=0.1,
             what="the killed run's key gone")
    assert lease_ttl(cluster, lease_id)[0] == -1  # etcd expired the lease, and the key went with it
    after = store.acquire(_lock.holder_record(KEY, "after", os.getpid(), 60, runbook="after"))
    assert after["decision"] == _lock.TAKE and after["record"]["token"] > token
    store.release(KEY, "after")


def test_a_holder_paused_past_its_lease_is_refused_at_its_next_step(cluster, inventory, tmp_path, started):
    with new_dns_lab() as dns:
        before = dns_answers(dns, "api")
        change = dns_args(dns, name="api", values=[lab_dns.REGION_ADDRESSES["b"]],
                          expected_values=[lab_dns.REGION_ADDRESSES["a"]])
        (tmp_path / "change.json").write_text(json.dumps({"dns_change": change}))
        proceed = tmp_path / "proceed"
        paused = Playbook(tmp_path, "paused", inventory, "-e", f"proceed_file={proceed}",
                          "-e", f"@{tmp_path / 'change.json'}")
        started.append(paused)
        taken, _ = wait_for(paused.taken, DEADLINE, what="the run holding the lock")
        keeper = keeper_of(tmp_path, paused)
        # The whole controller freezes (a VM pause): the run's process group and its lease keeper.
        os.killpg(paused.proc.pid, signal.SIGSTOP)
        os.kill(keeper, signal.SIGSTOP)
        store = _lock.make_store(settings(cluster))
        wait_for(lambda: store.inspect(KEY, "other")["decision"] == _lock.TAKE, DEADLINE, interval=0.1,
                 what="the paused run's lease expired")
        assert lease_ttl(cluster, taken["holder"]["lease_id"])[0] == -1
        # Another controller takes it meanwhile (a long lease: nothing renews it in this test).
        other_store = _lock.make_store(settings(cluster, dr_lock_etcd_ttl=600))
        other = other_store.acquire(_lock.holder_record(KEY, "other-run", os.getpid(), 60, runbook="other"))
        assert other["decision"] == _lock.TAKE
        proceed.touch()
        os.kill(keeper, signal.SIGCONT)
        os.killpg(paused.proc.pid, signal.SIGCONT)
        assert paused.wait() == 2
        out = paused.text()
        assert "refused before changing anything" in out and f"fencing token {taken['token']}" in out, out
        assert dns_answers(dns, "api") == before  # the step never reached the DNS server
        assert store.inspect(KEY, "other-run")["decision"] == _lock.HELD  # its release did not touch the new holder
        other_store.release(KEY, "other-run")


# ---------------------------------------------------------------- members lost


def readiness_checks(cluster: lab_etcd.EtcdCluster) -> dict[str, dict[str, Any]]:
    """The readiness engine (erlmcp.dr.readiness's) with the run lock on these members and nothing else declared:
    every other check is a 'not configured' one, the same whatever etcd does."""
    found = _readiness.run({"lock_store": "etcd", "lock_etcd": {"endpoints": cluster.endpoints, "timeout": 1}})
    return {check["name"]: check for check in found["checks"]}


def test_readiness_asks_every_etcd_member_warns_on_one_lost_and_says_automation_unavailable_without_quorum(
        cluster):
    healthy = readiness_checks(cluster)
    assert "lock_store directory" not in healthy  # the etcd store chosen: never the folder instead
    lock = healthy.pop("lock_store etcd")
    assert (lock["verdict"], lock["measured"]) == ("pass", "3/3"), lock
    assert "a linearizable read of /erlmcp-dr/locks/ works" in lock["detail"]
    others = {name: check["verdict"] for name, check in healthy.items()}

    lost = cluster.member("b")
    lab_etcd.stop_member(lost)
    one_lost = readiness_checks(cluster)
    lock = one_lost.pop("lock_store etcd")
    assert (lock["verdict"], lock["measured"]) == ("warn", "2/3"), lock
    silent = lock["detail"].split("not answering: ", 1)[1]
    assert lost.client_url in silent and not any(m.client_url in silent for m in cluster.members if m != lost)

    lab_etcd.stop_member(cluster.member("c"))
    no_quorum = readiness_checks(cluster)
    lock = no_quorum.pop("lock_store etcd")
    assert (lock["verdict"], lock["measured"]) == ("fail", "0/3"), lock  # etcd-a runs, but alone it serves no read
    assert lock["detail"].startswith("automation unavailable: 0 of 3 etcd members answer"), lock
    assert "never demotes or stops a database" in lock["detail"]
    assert all(m.client_url in lock["detail"] for m in cluster.members)
    # Nothing else in readiness fails because of it: every other check as it was with etcd healthy.
    for found in (one_lost, no_quorum):
        assert {name: check["verdict"] for name, check in found.items()} == others
    assert "lock_store directory" not in no_quorum


def test_one_member_lost_the_lock_works_two_lost_it_fails_closed(cluster):
    """Through the store's API (a whole run failing closed is the failover test below)."""
    store = _lock.make_store(settings(cluster, dr_lock_etcd_timeout=1))
    record = _lock.holder_record(KEY, "one-lost", os.getpid(), 60, runbook="race")
    lab_etcd.stop_member(cluster.member("a"), kill=True)  # the first endpoint: the client must move on
    taken = store.acquire(record)
    assert taken["decision"] == _lock.TAKE
    assert store.release(KEY, "one-lost")["outcome"] == _lock.RELEASED

    lab_etcd.stop_member(cluster.member("b"), kill=True)
    with pytest.raises(_lock_etcd.EtcdUnavailable) as refused:
        store.acquire(dict(record, run_id="two-lost"))
    assert "no etcd member answered with a quorum" in str(refused.value) and "fails closed" in str(refused.value)
    for member in (f"127.0.0.1:{m.client_port}" for m in cluster.members):
        assert member in str(refused.value)  # every member was tried, and is named


def test_two_members_lost_a_failover_fails_closed_and_no_database_changes_role(cluster, fresh_lab, home):
    lab_etcd.stop_member(cluster.member("b"), kill=True)
    lab_etcd.stop_member(cluster.member("c"), kill=True)

    def to_etcd(data: dict[str, Any]) -> None:
        data["all"]["vars"].update(cluster.inventory_vars(TTL), dr_lock_etcd_timeout=1)

    inventory = inventory_copy(fresh_lab, "etcd", to_etcd)
    before = topology(fresh_lab)

    _, result = run_json("run", "database_failover", "-i", str(inventory), "-e", "candidate=pg-c", "--yes",
                         expect_rc=1)

    message = failure_message(result)
    assert "no etcd member answered with a quorum" in message and "fails closed" in message, message
    assert topology(fresh_lab) == before  # pg-a still the primary: nothing fenced, stopped or promoted
