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

Writes benchmarks/results/<date>-watch-partition.json.

    .venv/bin/python benchmarks/watch_partition.py --trials 6
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import threading
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
from erlmcp_dr.lab.proxy import LinkProxy
from erlmcp_dr.watch import settings as watch_settings
from erlmcp_dr.watch.board import Board
from erlmcp_dr.watch.observer import UNAVAILABLE, Observer
from erlmcp_dr.watch_quorum import FAIL_OVER

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NAMES = ("obs-a", "obs-b", "witness")
WATCH = {"observers": [{"name": "obs-a", "region": "a"}, {"name": "obs-b", "region": "b"}, {"name": "witness"}],
         "failover_to": {"a": "b"}, "interval": 0.5, "consecutive_checks": 2, "carry_on_seconds": 1.0,
         "fail_over_seconds": 2.0, "sample_timeout": 0.5}
CHECKS_PAST_THE_BANDS = 8  # x 0.5 s: twice the fail-over band
HANG_GUARD = 300.0


class Watching:
    """One observer in a thread, behind its own proxies; its reports."""

    def __init__(self, name: str, inventory: Path, settings: watch_settings.WatchSettings,
                 proxies: list[LinkProxy]) -> None:
        self.name, self.proxies = name, proxies
        self.observer = Observer(settings, name, inventory)
        self.reports: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.observer.watch, args=(self.stop, self.reports.append), daemon=True)

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
    running: dict[str, Watching] = {}
    try:
        for name in NAMES:
            path, settings, proxies = observer_setup(cfg, cluster, base, name, inventory.parent / "observers")
            running[name] = Watching(name, path, settings, proxies)
        for each in running.values():
            each.thread.start()
        yield running
    finally:
        for each in running.values():
            each.stop.set()
        for each in running.values():
            each.thread.join(HANG_GUARD)
            for proxy in each.proxies:
                proxy.close()


def about_a(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["regions"]["a"] for r in reports if r.get("status") == "ok"]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-watch-", dir="/dev/shm" if os.path.isdir("/dev/shm")
                                 else None))
    root.chmod(0o711)  # the servers run as `postgres`, who must traverse it to reach their own folders
    os.environ.setdefault("ERLMCP_DR_HOME", str(root / "home"))
    cfg = lab.LabConfig(root=root / "lab", port_base=lab.free_port_base())
    rows: list[dict[str, Any]] = []
    try:
        lab.build_template(cfg)
        with ExitStack() as stack:
            live = lab.LabConfig(root=root / "live", port_base=lab.free_port_base())
            lab.clone(cfg, live, app=True)
            stack.callback(lab.down, live)
            cluster = stack.enter_context(lab_etcd.temporary_cluster("erlmcp-dr-bench-watch-etcd-"))
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
           "isolated_fail_over_decisions": sum(r["fail_over_decisions_by_isolated"] for r in rows), "rows": rows}
    path = args.out or RESULTS_DIR / f"{datetime.date.today().isoformat()}-watch-partition.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{out['trials']} trials: {out['failovers_started']} failovers started, "
          f"{out['isolated_fail_over_decisions']} fail_over decisions by an isolated observer; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
