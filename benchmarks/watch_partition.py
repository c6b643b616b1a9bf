"""Benchmark (counted, not asserted): partition trials of `runbook watch` (issue 22, Part 2). Does an isolated
observer ever start a failover?

The lab (PostgreSQL, Redis, the lab's application) and three etcd members run on loopback. There are three
observers of the static membership: obs-a (region a), obs-b (region b) and the witness. Each reaches every etcd
member and every part of region a through its own TCP proxies (src/erlmcp_dr/lab/proxy.py), one proxy per link.
Each trial isolates one observer, taking them in turn. The trials alternate two kinds:
- `view`: only its links to region a are cut. It still reaches etcd and publishes "failed" for longer than both
  bands, while the two others see region a healthy;
- `full`: every link of the observer is cut, to etcd and to region a. It reads nothing and says "automation
  unavailable".
A trial lasts until the isolated observer has made enough checks to pass the fail-over band (a `view` trial), or
for the same time (a `full` trial). Then the links are healed, and the next trial starts once every observer
sees region a healthy again. Counted per trial: failovers started by anyone (an observer's trigger, or a trigger
record in etcd; expected 0), the isolated observer's checks, decisions and unavailable checks, and the others'
decisions.

Then (first, so a broken lab shows at once) `--trigger-trials` trials of the trigger itself, each on a fresh copy of
the lab with its DNS: three observers without proxies (erlmcp_dr.lab.watchers, as the test runs them), a client
writing through the public name every 50 ms (erlmcp_dr.regional_probe.PublicNameWriter), and region a killed
(lab fail-region: its database, Redis and application, kill -9). Measured per trial, from region a's death: the
trigger (an observer's regional_failover started), the run's end, and the first write acknowledged by region b
through the public name; and the issue's budget for the last, 3 x interval + the regional failover's own time.

Writes benchmarks/results/<date>-watch-partition.json.

    .venv/bin/python benchmarks/watch_partition.py --trials 6 --trigger-trials 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

from erlmcp_dr import paths
from erlmcp_dr.lab import app as lab_app
from erlmcp_dr.lab import etcd as lab_etcd
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import regions as lab_regions
from erlmcp_dr.lab.proxy import LinkProxy
from erlmcp_dr.lab.watchers import ObserverGroup, ThreadedObserver, about, watching
from erlmcp_dr.regional_probe import PublicNameWriter
from erlmcp_dr.watch import settings as watch_settings
from erlmcp_dr.watch.board import Board
from erlmcp_dr.watch.observer import UNAVAILABLE
from erlmcp_dr.watch_quorum import FAIL_OVER

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WATCH_PREFIX = watch_settings.DEFAULT_PREFIX
NAMES = ("obs-a", "obs-b", "witness")
WATCH = {"observers": [{"name": "obs-a", "region": "a"}, {"name": "obs-b", "region": "b"}, {"name": "witness"}],
         "failover_to": {"a": "b"}, "interval": 0.5, "consecutive_checks": 2, "carry_on_seconds": 1.0,
         "fail_over_seconds": 2.0, "sample_timeout": 0.5}
CHECKS_PAST_THE_BANDS = 8  # x 0.5 s: twice the fail-over band
# The trigger trials: tests/integration/test_watch_trigger.py's settings (the regional failover runs in a trial, and
# its checks at 0.5 s would mostly measure a loaded controller), without the write guard.
TRIGGER_WATCH = dict(WATCH, interval=1.0, consecutive_checks=3, carry_on_seconds=2.0, fail_over_seconds=4.0,
                     sample_timeout=3.0)
FAILOVER_GUARD = 900.0  # seconds a triggered regional_failover gets (a hang guard)
HANG_GUARD = 300.0


class Watching(ThreadedObserver):
    """One observer in a thread (the tests' helper, erlmcp_dr.lab.watchers), behind its own proxies."""

    def __init__(self, name: str, inventory: Path, settings: watch_settings.WatchSettings,
                 proxies: list[LinkProxy]) -> None:
        super().__init__(name, inventory, settings)
        self.proxies = proxies

    def region_links(self) -> list[LinkProxy]:
        return self.proxies[3:]


def observer_setup(cfg: lab.LabConfig, cluster: lab_etcd.EtcdCluster, base: dict[str, Any], name: str,
                   folder: Path) -> tuple[Path, watch_settings.WatchSettings, list[LinkProxy]]:
    """This observer's proxies (three etcd members, then region a's app, database, Redis), its inventory copy
    pointing at them, and its settings."""
    etcd_links = [LinkProxy("127.0.0.1", member.client_port) for member in cluster.members]
    app = next(a for a in lab_app.apps(cfg) if a.region == "a")
    pg = next(n for n in cfg.nodes if n.region == "a")
    redis = next(n for n in cfg.redis_nodes if n.region == "a")
    region_links = [LinkProxy(app.host, app.port), LinkProxy("127.0.0.1", pg.port), LinkProxy("127.0.0.1", redis.port)]
    data = json.loads(json.dumps(base))
    hosts = data["all"]["children"]
    hosts["app"]["hosts"][app.name]["app_url"] = f"http://{region_links[0].address}"
    hosts["postgres"]["hosts"][pg.name]["pg_port"] = region_links[1].port
    hosts["redis"]["hosts"][redis.name]["redis_port"] = region_links[2].port
    data["all"]["vars"].update(dr_watch=WATCH, dr_lock_etcd_endpoints=[f"http://{p.address}" for p in etcd_links],
                               dr_lock_etcd_timeout=0.5)
    path = folder / name / "hosts.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False))
    settings = watch_settings.parse(watch_settings.inventory_variables(path))
    return path, settings, etcd_links + region_links


@contextmanager
def observers(cfg: lab.LabConfig, cluster: lab_etcd.EtcdCluster, inventory: Path) -> Iterator[dict[str, Watching]]:
    base = yaml.safe_load(inventory.read_text())
    running = ObserverGroup()
    try:
        for name in NAMES:
            path, settings, proxies = observer_setup(cfg, cluster, base, name, inventory.parent / "observers")
            running[name] = Watching(name, path, settings, proxies).start()
        yield running
    finally:
        running.halt_all(HANG_GUARD)
        for each in running.values():
            for proxy in each.proxies:
                proxy.close()


def about_a(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return about(reports, "a")


def trial(running: dict[str, Watching], index: int, reader: Board) -> dict[str, Any]:
    kind = "view" if index % 2 == 0 else "full"
    isolated = running[NAMES[index % len(NAMES)]]
    others = [w for w in running.values() if w is not isolated]
    marks = {w.name: len(w.reports) for w in running.values()}
    links = isolated.region_links() if kind == "view" else isolated.proxies
    started = time.monotonic()
    for proxy in links:
        proxy.cut()
    if kind == "view":
        wait_for(lambda: any(a["failed"] and a["consecutive"] >= CHECKS_PAST_THE_BANDS
                             for a in about_a(isolated.reports[marks[isolated.name]:])), HANG_GUARD, interval=0.1,
                 what=f"{isolated.name}'s verdict past the bands")
    else:
        wait_for(lambda: sum(1 for r in isolated.reports[marks[isolated.name]:] if r["status"] == UNAVAILABLE) >= 2
                 and time.monotonic() - started >= CHECKS_PAST_THE_BANDS * WATCH["interval"], HANG_GUARD,
                 interval=0.1, what=f"{isolated.name} unavailable past the bands")
    partitioned = round(time.monotonic() - started, 2)
    for proxy in links:
        proxy.heal()
    mine = isolated.reports[marks[isolated.name]:]
    row = {"trial": index, "kind": kind, "isolated": isolated.name, "partitioned_s": partitioned,
           "isolated_checks": len(mine),
           "isolated_unavailable": sum(1 for r in mine if r["status"] == UNAVAILABLE),
           "isolated_decisions": sorted({a.get("decision") for a in about_a(mine)}),
           "isolated_failed_max": max((a["consecutive"] for a in about_a(mine) if a["failed"]), default=0),
           "others_decisions": sorted({a.get("decision") for w in others
                                       for a in about_a(w.reports[marks[w.name]:])})}
    # Healed: the next trial starts once everyone publishes region a healthy again.
    marks = {w.name: len(w.reports) for w in running.values()}
    wait_for(lambda: all(any(not a["failed"] for a in about_a(w.reports[marks[w.name]:])) for w in running.values()),
             HANG_GUARD, interval=0.1, what="every observer seeing region a healthy after the heal")
    row["failovers_started"] = sum(len(w.observer.triggers) for w in running.values())
    row["trigger_records"] = len(reader.read()[1])
    row["fail_over_decisions_by_isolated"] = sum(1 for a in about_a(mine) if a.get("decision") == FAIL_OVER)
    return row


def _wall(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def trigger_trial(template: lab.LabConfig, cluster: lab_etcd.EtcdCluster, root: Path, index: int) -> dict[str, Any]:
    """One kill of region a on a fresh copy of the lab, watched by three observers; times from the death."""
    cfg = lab.LabConfig(root=root / f"trigger-{index}", port_base=lab.free_port_base())
    try:
        lab.clone(template, cfg, app=True, dns=True)
        base = lab.write_inventory(cfg, cfg.root / "inventory" / "hosts.yml", own_lock_dir=True)
        data = yaml.safe_load(base.read_text())
        data["all"].setdefault("vars", {}).update(dr_watch=TRIGGER_WATCH, dr_lock_etcd_endpoints=cluster.endpoints)
        inventory = base.parent / "watch" / "hosts.yml"
        inventory.parent.mkdir(parents=True, exist_ok=True)
        inventory.write_text("---\n" + yaml.safe_dump(data, sort_keys=False))
        lab_etcd.delete_keys(cluster, WATCH_PREFIX)  # the last trial's trigger record
        with PublicNameWriter(cfg, 0.05) as writer, watching(*((name, inventory) for name in NAMES)) as running:
            wait_for(lambda: all(w.about("a") for w in running.values()) and writer.report.first_in("a"),
                     HANG_GUARD, interval=0.1, what="every observer's first verdict and a write in region a")
            died_wall, died = time.time(), time.monotonic()
            lab_regions.fail_region(cfg, "a")
            first_b, _ = wait_for(lambda: writer.report.first_in("b", died), FAILOVER_GUARD, interval=0.05,
                                  what="a write acknowledged by region b through the public name")
            wait_for(lambda: any(t.outcome for w in running.values() for t in w.observer.triggers), FAILOVER_GUARD,
                     interval=0.2, what="the triggered regional_failover's end")
            ended_wall = time.time()
            triggers = [(w.name, t) for w in running.values() for t in w.observer.triggers]
        winner, trigger = triggers[0]  # "triggers" says whether it was the only one (it must be)
        failover_s = ended_wall - _wall(trigger.started_at)
        return {"trial": index, "winner": winner, "outcome": trigger.outcome.get("state"),
                "run_id": trigger.outcome.get("run_id"), "triggers": len(triggers),
                "death_to_trigger_s": round(_wall(trigger.started_at) - died_wall, 2),
                "failover_run_s": round(failover_s, 2),
                "death_to_first_write_b_s": round(first_b.at - died, 2),
                "budget_s": round(3 * TRIGGER_WATCH["interval"] + failover_s, 2),
                "client": writer.report.to_dict(), "load_1m": round(os.getloadavg()[0], 2)}
    finally:
        lab.down(cfg)
        shutil.rmtree(cfg.root, ignore_errors=True)


def median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else round((ordered[middle - 1] + ordered[middle]) / 2, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--trigger-trials", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-watch-", dir="/dev/shm" if os.path.isdir("/dev/shm")
                                 else None))
    root.chmod(0o711)  # the servers run as `postgres`, who must traverse it to reach their own folders
    os.environ.setdefault("ERLMCP_DR_HOME", str(root / "home"))
    cfg = lab.LabConfig(root=root / "lab", port_base=lab.free_port_base())
    rows: list[dict[str, Any]] = []
    kills: list[dict[str, Any]] = []
    try:
        lab.build_template(cfg)
        with ExitStack() as stack:
            live = lab.LabConfig(root=root / "live", port_base=lab.free_port_base())
            lab.clone(cfg, live, app=True)
            stack.callback(lab.down, live)
            cluster = stack.enter_context(lab_etcd.temporary_cluster("erlmcp-dr-bench-watch-etcd-"))
            for index in range(args.trigger_trials):
                kills.append(trigger_trial(cfg, cluster, root, index))
                print(json.dumps(kills[-1]), flush=True)
            lab_etcd.delete_keys(cluster, WATCH_PREFIX)
            inventory = lab.write_inventory(live, live.root / "inventory" / "hosts.yml", own_lock_dir=True)
            reader_settings = watch_settings.parse({"dr_watch": WATCH, "dr_lock_etcd_endpoints": cluster.endpoints})
            reader = Board(reader_settings.etcd, reader_settings.prefix, "benchmark", reader_settings.lease_seconds)
            with observers(live, cluster, inventory) as running:
                wait_for(lambda: all(about_a(w.reports) for w in running.values()), HANG_GUARD, interval=0.1,
                         what="every observer's first verdict")
                for index in range(args.trials):
                    rows.append(trial(running, index, reader))
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        lab.down(cfg)
        shutil.rmtree(root, ignore_errors=True)
    out = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
           "load_1m": round(os.getloadavg()[0], 2), "settings": WATCH, "trials": len(rows),
           "failovers_started": sum(r["failovers_started"] for r in rows),
           "trigger_records": max((r["trigger_records"] for r in rows), default=0),
           "isolated_fail_over_decisions": sum(r["fail_over_decisions_by_isolated"] for r in rows), "rows": rows,
           "trigger_settings": TRIGGER_WATCH, "trigger_trials": kills}
    if kills:
        to_b = [k["death_to_first_write_b_s"] for k in kills]
        out["death_to_first_write_b_s"] = {"median": median(to_b), "max": max(to_b), "trials": len(to_b),
                                           "within_budget": sum(k["death_to_first_write_b_s"] <= k["budget_s"]
                                                                for k in kills)}
    path = args.out or RESULTS_DIR / f"{datetime.date.today().isoformat()}-watch-partition.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{out['trials']} trials: {out['failovers_started']} failovers started, "
          f"{out['isolated_fail_over_decisions']} fail_over decisions by an isolated observer; "
          f"region a's death to the first write in b: {out.get('death_to_first_write_b_s')}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
