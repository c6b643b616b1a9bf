"""`runbook watch` (src/erlmcp_dr/watch/) on three real etcd members on loopback (lab/etcd.py) and the real lab
(PostgreSQL streaming replication, redis-server, Knot DNS, the lab's application): three observers of the static
membership (obs-a in region a, obs-b in region b, the witness), each in a thread of this test process with its own
etcd session and lease, sampling region a's application, database and Redis every second.

One lab run asserts the whole story (the CI budget): an observer that alone sees region a failing never triggers;
etcd stopped during a healthy period: every observer says "automation unavailable", nothing is triggered and no
database changes role (region a's write guard holds: it still reaches the peer databases); region a's observer cut
off from etcd and from the peer databases: its guard makes pg-a read-only; region a killed: the verdicts are
published, the quorum is reached after N consecutive failed checks, exactly one regional_failover is started (one
run folder, one trigger record naming it) and region b serves, verified from outside; the other observers stand
down.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import new_lab
from regional_kill import B_SERVING, end_state, redis_primaries, writable_nodes
from runbook_helpers import DEADLINE, closed_port, host_vars, inventory_copy, run_folders, takes_no_writes, wait_for

from erlmcp_dr.lab import etcd as lab_etcd
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import regions as lab_regions
from erlmcp_dr.watch import settings as watch_settings
from erlmcp_dr.watch.board import Board
from erlmcp_dr.watch.guard import FENCE, HOLD
from erlmcp_dr.watch.observer import UNAVAILABLE, Observer
from erlmcp_dr.watch_quorum import CARRY_ON, FAIL_OVER, WAIT

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


class Running:
    """One observer watching in a thread; every report it made, in order."""

    def __init__(self, name: str, inventory: Path) -> None:
        settings = watch_settings.parse(watch_settings.inventory_variables(inventory))
        self.observer = Observer(settings, name, inventory)
        self.reports: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.observer.watch, args=(self.stop, self.reports.append),
                                       name=f"observer-{name}", daemon=True)

    def about_a(self, since: int = 0) -> list[dict[str, Any]]:
        return [report["regions"]["a"] | {"status": report["status"]} for report in self.reports[since:]
                if report.get("status") == "ok"]


@contextmanager
def observers(*specs: tuple[str, Path]) -> Iterator[dict[str, Running]]:
    running = {name: Running(name, inventory) for name, inventory in specs}
    for each in running.values():
        each.thread.start()
    try:
        yield running
    finally:
        for each in running.values():
            each.stop.set()
        for each in running.values():
            each.thread.join(DEADLINE)


def board(cluster: lab_etcd.EtcdCluster) -> Board:
    settings = watch_settings.parse({"dr_watch": WATCH, "dr_lock_etcd_endpoints": cluster.endpoints})
    return Board(settings.etcd, settings.prefix, "test-reader", settings.lease_seconds)


def failover_runs(home: Path) -> list[Path]:
    return [path for path in run_folders() if "-regional_failover-" in path.name and "." not in path.name]


def test_three_observers_trigger_one_failover_on_a_majority_never_on_a_minority_nor_without_etcd(
        home: Path, etcd: lab_etcd.EtcdCluster) -> None:
    with new_lab(app=True, dns=True) as cfg:
        seen = watch_inventory(cfg, etcd, "watch")
        blind = watch_inventory(cfg, etcd, "watch-blind", app_a_url=f"http://127.0.0.1:{closed_port()}")
        cut_off = watch_inventory(cfg, etcd, "watch-cut-off", peers_cut=True)

        # 1. A healthy lab; only the witness's view of region a's application is cut off: it alone says failed,
        #    for longer than both bands, and never triggers (a minority of the static membership).
        with observers(("obs-a", seen), ("obs-b", seen), ("witness", blind)) as running:
            witness = running["witness"]
            wait_for(lambda: any(a["failed"] and a["consecutive"] >= CHECKS_PAST_THE_BANDS
                                 for a in witness.about_a()), DEADLINE, interval=0.2,
                     what="the witness's verdict past the bands")
            verdicts, failovers = board(etcd).read()
            about_a = {verdict.observer: verdict for verdict in verdicts if verdict.region == "a"}
            assert sorted(about_a) == ["obs-a", "obs-b", "witness"], verdicts  # published, each under its lease
            assert about_a["witness"].failed and not about_a["obs-a"].failed and not about_a["obs-b"].failed
            assert failovers == {}
            confirmed = [a for a in witness.about_a() if a["failed"] and a["consecutive"] >= 3]
            assert confirmed and all(a["decision"] == WAIT and "trigger" not in a for a in confirmed), confirmed
            assert "1 of 3 observers say region a failed" in confirmed[-1]["reason"]
            assert all(a["decision"] in (CARRY_ON, WAIT) for r in running.values() for a in r.about_a())

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

            # 2b. Region a's observer cut off from etcd AND from the peer databases: its guard makes pg-a read-only.
            with observers(("obs-a", cut_off)) as alone:
                fenced, _ = wait_for(lambda: next((r["guard"] for r in alone["obs-a"].reports
                                                   if r.get("guard", {}).get("action") == FENCE), None),
                                     DEADLINE, interval=0.2, what="region a's guard fencing pg-a")
            assert fenced["fenced"] == [{"host": "pg-a", "fenced": True, "changed": True,
                                         "terminated_sessions": fenced["fenced"][0]["terminated_sessions"]}]
            assert "reaches 0 of 2 peer databases: 1 of 3 members, not a majority" in fenced["reason"]
            assert takes_no_writes(cfg, "pg-a").startswith("write rejected")
            assert writable_nodes(cfg) == []
            lab_etcd.up(etcd)
            marks = {name: len(r.reports) for name, r in running.items()}
            wait_for(lambda: all(r.about_a(marks[name]) for name, r in running.items()), DEADLINE, interval=0.2,
                     what="every observer publishing again once etcd is back")
        assert failover_runs(home) == []

        # 3. Region a killed (its database, Redis and application): a majority sees it fail N checks in a row and
        #    exactly one observer's trigger starts regional_failover; the others stand down.
        with observers(("obs-a", seen), ("obs-b", seen), ("witness", seen)) as running:
            wait_for(lambda: all(r.about_a() for r in running.values()), DEADLINE, interval=0.2,
                     what="every observer's first verdict")
            lab_regions.fail_region(cfg, "a")

            def settled() -> dict[str, Any] | None:
                record = board(etcd).read()[1].get("a")
                return record if record and record.get("state") != "running" else None

            record, _ = wait_for(settled, 900, interval=1.0, what="the triggered regional_failover's outcome")
            marks = {name: len(r.reports) for name, r in running.items()}
            wait_for(lambda: all(r.about_a(marks[name]) for name, r in running.items()), DEADLINE, interval=0.2,
                     what="a check by every observer after the failover")
        started = [trigger for r in running.values() for trigger in r.observer.triggers]
        assert len(started) == 1 and started[0].outcome["state"] == "completed", [t.outcome for t in started]
        assert record["state"] == "completed" and record["observer"] in running and record["to_region"] == "b"
        first_failover = next(a for r in running.values() for a in r.about_a() if a["decision"] == FAIL_OVER)
        assert len(first_failover["failed_votes"]) >= 2  # a majority of the three, each after N failed checks
        stood_down = [a["trigger"] for name, r in running.items() for a in r.about_a(marks[name])
                      if a["decision"] == FAIL_OVER]
        assert stood_down and all(text.startswith("stood down: regional_failover from a to b by observer")
                                  for text in stood_down), stood_down

        (run_dir,) = failover_runs(home)
        result = json.loads((run_dir / "result.json").read_text())
        assert result["run_id"] == record["run_id"] and result["status"] == "successful"
        assert result["operator"] == f"runbook watch ({record['observer']})"
        assert end_state(cfg)["verified_state"] == B_SERVING
