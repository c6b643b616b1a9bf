"""`runbook watch` (src/erlmcp_dr/watch/) on three real etcd members on loopback (lab/etcd.py) and the real lab
(PostgreSQL streaming replication, redis-server, Knot DNS, the lab's application): three observers of the static
membership (obs-a in region a, obs-b in region b, the witness), each with its own etcd session and lease, sampling
region a's application, database and Redis every second. Most run in threads of this test process
(erlmcp_dr.lab.watchers, the same helper as benchmarks/watch_partition.py); in the first phase the witness is the
real `runbook watch` command in a process of its own, stopped with SIGTERM as systemd stops it.

One lab run asserts the whole story (the CI budget): an observer that alone sees region a failing never triggers; the
real command publishes, decides and stops cleanly (exit 0, its verdicts gone, no claim left); etcd stopped during a
healthy period: every observer says "automation unavailable", and so does readiness's lock store check, nothing is
triggered and no database changes role (region a's write guard holds: it still reaches the peer databases); region
a's observer cut off from etcd and from the peer databases: its guard makes pg-a read-only and pauses redis-a's
writes, and every observer then counts region a failed (a region that takes no writes is a failed region); pg-a made
writable again (the failback's job) before etcd returns: no failover once etcd is back, and the guard lifts its Redis
pause; region a killed: the verdicts are published, the quorum is reached after N consecutive failed checks, exactly
one regional_failover is started (one run folder, one trigger record naming it) and region b serves, verified from
outside; the other observers stand down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import new_lab
from regional_kill import B_SERVING, end_state, redis_primaries, writable_nodes
from runbook_helpers import (
    CLI_HANG_GUARD,
    DEADLINE,
    closed_port,
    host_vars,
    inventory_copy,
    login_args,
    run_folders,
    runbook_command,
    takes_no_writes,
    venv_path,
    wait_for,
)

from erlmcp_dr import paths
from erlmcp_dr.lab import etcd as lab_etcd
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import regions as lab_regions
from erlmcp_dr.lab.watchers import about, watching
from erlmcp_dr.watch import settings as watch_settings
from erlmcp_dr.watch.board import Board
from erlmcp_dr.watch.guard import FENCE, HOLD
from erlmcp_dr.watch.observer import UNAVAILABLE
from erlmcp_dr.watch_quorum import CARRY_ON, FAIL_OVER, WAIT

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness  # noqa: E402

pytestmark = pytest.mark.integration

WATCH = {"observers": [{"name": "obs-a", "region": "a"}, {"name": "obs-b", "region": "b"}, {"name": "witness"}],
         "failover_to": {"a": "b"}, "interval": 1.0, "consecutive_checks": 3, "carry_on_seconds": 2.0,
         "fail_over_seconds": 4.0, "sample_timeout": 3.0, "guard": True}  # guard_seconds: 2 - 1 = 1 s
CHECKS_PAST_THE_BANDS = 6  # consecutive failed checks x 1 s interval: past fail_over_seconds, the majority alone


@pytest.fixture(scope="module")
def etcd() -> Iterator[lab_etcd.EtcdCluster]:
    with lab_etcd.temporary_cluster("erlmcp-dr-watch-etcd-") as cluster:
        yield cluster


def watch_inventory(cfg: lab.LabConfig, cluster: lab_etcd.EtcdCluster, name: str, app_a_url: str = "",
                    peers_cut: bool = False) -> Path:
    """The lab's inventory with dr_watch and the etcd members; app_a_url: this copy's view of region a's app;
    peers_cut: pg-b and pg-c at ports nothing listens on (this copy's links to the peer databases cut)."""
    def change(data: dict[str, Any]) -> None:
        data["all"].setdefault("vars", {}).update(dr_watch=WATCH, dr_lock_etcd_endpoints=cluster.endpoints)
        if app_a_url:
            data["all"]["children"]["app"]["hosts"]["app-a"]["app_url"] = app_a_url
        for node in ("pg-b", "pg-c") if peers_cut else ():
            host_vars(data, node)["pg_port"] = closed_port()
    return inventory_copy(cfg, name, change)


class WatchCommand:
    """`runbook watch -i INV --name NAME --json` in a process of its own, as its systemd unit runs it; its JSON
    reports as they come (one per check), read by a thread."""

    def __init__(self, name: str, inventory: Path) -> None:
        self.proc = subprocess.Popen([*runbook_command(), "watch", "-i", str(inventory), "--name", name, "--json"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=dict(os.environ, PATH=venv_path()))
        self.reports: list[dict[str, Any]] = []
        self.stray: list[str] = []  # a stdout line that is not a report: the assertion's message shows it
        self.stderr = ""
        self.readers = [threading.Thread(target=self._read_reports, daemon=True),
                        threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self.readers:
            reader.start()

    def _read_reports(self) -> None:
        for line in self.proc.stdout or ():
            try:
                self.reports.append(json.loads(line))
            except ValueError:
                self.stray.append(line)

    def _read_stderr(self) -> None:
        self.stderr = self.proc.stderr.read() if self.proc.stderr else ""

    def about(self, region: str, since: int = 0) -> list[dict[str, Any]]:
        return about(self.reports[since:], region)

    def sigterm(self) -> int:
        """SIGTERM, as systemd stops the unit; the exit code once it ended."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(CLI_HANG_GUARD)
        for reader in self.readers:
            reader.join(DEADLINE)
        return rc

    def __str__(self) -> str:
        return f"rc={self.proc.returncode}\n--- stray stdout\n{''.join(self.stray)[-2000:]}\n--- stderr\n" \
               f"{self.stderr[-4000:]}"


@contextmanager
def watch_command(name: str, inventory: Path) -> Iterator[WatchCommand]:
    command = WatchCommand(name, inventory)
    try:
        yield command
    finally:
        if command.proc.poll() is None:  # the test failed before its SIGTERM: never leave it running
            command.proc.kill()
            command.proc.wait(DEADLINE)


class HeldWrite:
    """A SET to a lab Redis node from a connection of its own, in a thread: a write pause holds it (CLIENT LIST shows
    the connection blocked), and it goes through once the pause is lifted."""

    NAME = "watch-test-held-write"

    def __init__(self, cfg: lab.LabConfig, node: str) -> None:
        self.login = {"host": "127.0.0.1", "port": cfg.redis_node(node).port, "password": lab.LAB_PASSWORD,
                      "decode_responses": True, "socket_connect_timeout": 5, "socket_timeout": CLI_HANG_GUARD}
        self.result: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self) -> None:
        import redis

        with redis.Redis(**self.login) as client:
            client.client_setname(self.NAME)
            self.result["set"] = client.set("erlmcp:watch-test:held", "1")

    def held(self) -> bool:
        import redis

        with redis.Redis(**dict(self.login, socket_timeout=5)) as client:
            return any(c.get("name") == self.NAME and "b" in c.get("flags", "") for c in client.client_list())

    def outcome(self) -> Any:
        self.thread.join(CLI_HANG_GUARD)
        return self.result.get("set")


def board(cluster: lab_etcd.EtcdCluster) -> Board:
    settings = watch_settings.parse({"dr_watch": WATCH, "dr_lock_etcd_endpoints": cluster.endpoints})
    return Board(settings.etcd, settings.prefix, "test-reader", settings.lease_seconds)


def failover_runs(home: Path) -> list[Path]:
    return [path for path in run_folders() if "-regional_failover-" in path.name and "." not in path.name]


def unfence(cfg: lab.LabConfig, node: str) -> dict[str, Any]:
    """`node` writable again through the fence engine (pg_fence state=unfenced, method read_only): what the failback
    does after a guard's fence; the guard itself never does it."""
    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import fence

    return fence.run(dict(login_args(cfg, node), state="unfenced", method="read_only", login_db="postgres",
                          wait_timeout=10.0, connect_timeout=5))


def test_three_observers_trigger_one_failover_on_a_majority_never_on_a_minority_nor_without_etcd(
        home: Path, etcd: lab_etcd.EtcdCluster) -> None:
    with new_lab(app=True, dns=True) as cfg:
        seen = watch_inventory(cfg, etcd, "watch")
        blind = watch_inventory(cfg, etcd, "watch-blind", app_a_url=f"http://127.0.0.1:{closed_port()}")
        cut_off = watch_inventory(cfg, etcd, "watch-cut-off", peers_cut=True)

        # 1. A healthy lab; only the witness's view of region a's application is cut off: it alone says failed,
        #    for longer than both bands, and never triggers (a minority of the static membership). The witness is
        #    the real `runbook watch` command.
        with watching(("obs-a", seen), ("obs-b", seen)) as running, watch_command("witness", blind) as witness:
            wait_for(lambda: any(a["failed"] and a["consecutive"] >= CHECKS_PAST_THE_BANDS
                                 for a in witness.about("a")), CLI_HANG_GUARD, interval=0.2,
                     what=f"the witness's verdict past the bands (runbook watch: {witness})")
            verdicts, failovers = board(etcd).read()
            about_a = {verdict.observer: verdict for verdict in verdicts if verdict.region == "a"}
            assert sorted(about_a) == ["obs-a", "obs-b", "witness"], verdicts  # published, each under its lease
            assert about_a["witness"].failed and not about_a["obs-a"].failed and not about_a["obs-b"].failed
            assert failovers == {}
            confirmed = [a for a in witness.about("a") if a["failed"] and a["consecutive"] >= 3]
            assert confirmed and all(a["decision"] == WAIT and "trigger" not in a for a in confirmed), confirmed
            assert "1 of 3 observers say region a failed" in confirmed[-1]["reason"]
            assert all(a["decision"] in (CARRY_ON, WAIT) for r in (*running.values(), witness) for a in r.about("a"))
            assert all(report["observer"] == "witness" for report in witness.reports) and not witness.stray, witness

            # 1b. The command stopped as systemd stops it: exit 0, its lease revoked (its verdicts gone at once),
            #     no trigger record or claim left behind. A witness in a thread takes its place.
            assert witness.sigterm() == 0, str(witness)
            verdicts, failovers = board(etcd).read()
            assert "witness" not in {v.observer for v in verdicts}, verdicts  # revoked, not left to expire
            assert failovers == {}
            running.start("witness", blind)

            # 2. etcd stopped during the healthy period: every observer says so, nothing is triggered.
            lab_etcd.down(etcd)
            marks = {name: len(r.reports) for name, r in running.items()}

            def unavailable_twice() -> bool:
                return all(sum(1 for report in r.reports[marks[name]:] if report["status"] == UNAVAILABLE) >= 2
                           for name, r in running.items())

            wait_for(unavailable_twice, DEADLINE, interval=0.2, what="every observer saying automation unavailable")
            said = [report["message"] for r in running.values() for report in r.reports if report["status"] != "ok"]
            assert all(message.startswith(f"{UNAVAILABLE}: no etcd member answered") for message in said), said
            assert not any(r.observer.triggers for r in running.values())
            # Region a's guard lost etcd for longer than guard_seconds but reaches both peer databases: it holds.
            holds = [report["guard"] for report in running["obs-a"].reports[marks["obs-a"]:]
                     if report["status"] == UNAVAILABLE]
            assert holds and all(guard["action"] == HOLD for guard in holds), holds
            assert "an etcd outage alone never demotes anything" in holds[-1]["reason"]
            assert writable_nodes(cfg) == ["pg-a"] and redis_primaries(cfg) == ["redis-a"]  # nothing demoted
            # ... and readiness says so too (its lock store check, the engine erlmcp.dr.readiness runs).
            (lock,) = readiness.lock_store_checks({"lock_store": "etcd", "lock_etcd": {"endpoints": etcd.endpoints}})
            assert (lock["verdict"], lock["measured"]) == ("fail", "0/3"), lock
            assert lock["detail"].startswith(f"{UNAVAILABLE}: 0 of 3 etcd members answer"), lock

            # 2b. Region a's observer cut off from etcd AND from the peer databases: its guard makes pg-a read-only.
            with watching(("obs-a", cut_off)) as alone:
                fenced, _ = wait_for(lambda: next((r["guard"] for r in alone["obs-a"].reports
                                                   if r.get("guard", {}).get("action") == FENCE), None),
                                     DEADLINE, interval=0.2, what="region a's guard fencing pg-a")
            assert fenced["fenced"] == [{"host": "pg-a", "fenced": True, "changed": True,
                                         "terminated_sessions": fenced["fenced"][0]["terminated_sessions"]}]
            assert "reaches 0 of 2 peer databases: 1 of 3 members, not a majority" in fenced["reason"]
            # ... and pauses redis-a's writes: a write is held, not refused.
            assert fenced["redis_paused"] == [{"host": "redis-a", "paused": True}], fenced
            held = HeldWrite(cfg, "redis-a")
            wait_for(held.held, DEADLINE, interval=0.1, what="a write to redis-a held by the guard's pause")
            assert takes_no_writes(cfg, "pg-a").startswith("write rejected")
            assert writable_nodes(cfg) == []
            # A region whose primary the guard fenced takes no writes: every observer counts it failed (its
            # application answers 503, "degraded"), with etcd or without (docs/watch.md, "A fenced region").
            marks = {name: len(r.reports) for name, r in running.items()}

            def seen_failed(since: dict[str, int]) -> bool:
                return all(any(a["failed"] and any("HTTP status 503" in reason for reason in a["reasons"])
                               for a in running[name].about("a", since[name], every_status=True))
                           for name in ("obs-a", "obs-b"))

            wait_for(lambda: seen_failed(marks), DEADLINE, interval=0.2, what="obs-a and obs-b seeing region a "
                     "failed while pg-a is fenced")
            # The failback's part, before etcd returns: pg-a writable again, and seen healthy. Left fenced, region a
            # stays failed, and once etcd is back the majority rightly moves it: that is phase 3's case, not this
            # one's (an etcd outage during a healthy period starts nothing).
            assert unfence(cfg, "pg-a")["changed"] is True
            marks = {name: len(r.reports) for name, r in running.items()}
            wait_for(lambda: all(any(not a["failed"] for a in running[name].about("a", marks[name], every_status=True))
                                 for name in ("obs-a", "obs-b")), DEADLINE, interval=0.2,
                     what="obs-a and obs-b seeing region a healthy again")
            before_etcd = len(running["obs-a"].reports)
            lab_etcd.up(etcd)
            marks = {name: len(r.reports) for name, r in running.items()}
            wait_for(lambda: all(len(r.about("a", marks[name])) >= 2 for name, r in running.items()), DEADLINE,
                     interval=0.2, what="every observer publishing twice once etcd is back")
            back = [a for name, r in running.items() for a in r.about("a", marks[name])]
            assert all(a["decision"] in (CARRY_ON, WAIT) for a in back), back
            # Region a's observer reached etcd again, no trigger record: its guard lifted the Redis pause it noted
            # (the one set by the cut-off observer of 2b, through the state home's note), and the held write went
            # through.
            lifted = [r["guard_lifted"] for r in running["obs-a"].reports[before_etcd:] if r.get("guard_lifted")]
            assert lifted == [[{"host": "redis-a", "unpaused": True}]], lifted
            assert held.outcome() is True
        assert failover_runs(home) == []
        assert not any(r.observer.triggers for r in running.values())

        # 3. Region a killed (its database, Redis and application): a majority sees it fail N checks in a row and
        #    exactly one observer's trigger starts regional_failover; the others stand down.
        with watching(("obs-a", seen), ("obs-b", seen), ("witness", seen)) as running:
            wait_for(lambda: all(r.about("a") for r in running.values()), DEADLINE, interval=0.2,
                     what="every observer's first verdict")
            lab_regions.fail_region(cfg, "a")

            def settled() -> dict[str, Any] | None:
                record = board(etcd).read()[1].get("a")
                return record if record and record.get("state") != "running" else None

            record, _ = wait_for(settled, 900, interval=1.0, what="the triggered regional_failover's outcome")
            marks = {name: len(r.reports) for name, r in running.items()}
            wait_for(lambda: all(r.about("a", marks[name]) for name, r in running.items()), DEADLINE, interval=0.2,
                     what="a check by every observer after the failover")
        started = [trigger for r in running.values() for trigger in r.observer.triggers]
        assert len(started) == 1 and started[0].outcome["state"] == "completed", [t.outcome for t in started]
        assert record["state"] == "completed" and record["observer"] in running and record["to_region"] == "b"
        first_failover = next(a for r in running.values() for a in r.about("a") if a["decision"] == FAIL_OVER)
        assert len(first_failover["failed_votes"]) >= 2  # a majority of the three, each after N failed checks
        stood_down = [a["trigger"] for name, r in running.items() for a in r.about("a", marks[name])
                      if a["decision"] == FAIL_OVER]
        assert stood_down and all(text.startswith("stood down: regional_failover from a to b by observer")
                                  for text in stood_down), stood_down

        (run_dir,) = failover_runs(home)
        result = json.loads((run_dir / "result.json").read_text())
        assert result["run_id"] == record["run_id"] and result["status"] == "successful"
        assert result["operator"] == f"runbook watch ({record['observer']})"
        assert end_state(cfg)["verified_state"] == B_SERVING
