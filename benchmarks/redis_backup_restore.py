"""Benchmark (measured, not asserted): the Redis backup and restore engines against their floors, on 1 M keys.

For each of `--runs` rounds, on a redis-server of its own (a temp folder, a free loopback port, `appendonly yes`
with the multi-part AOF, as the lab and the seeds' production):
- bgsave: a bare BGSAVE, from the command to `rdb_bgsave_in_progress:0` with `rdb_saves` advanced;
- backup: the redis_backup engine (BGSAVE and wait, atomic copy with sha256, redis-check-rdb on the stored copy,
  metadata), called in-process: Ansible's own start (a module shipped per task) is not part of it;
- load: redis-server's own load of the same RDB - a server started on a copy of it with AOF off, from the start
  command to `loading:0`;
- restore: the redis_restore engine from that backup (verified first, writes paused, SHUTDOWN SAVE as the rollback
  point, AOF off, start and load, keys and sampled values checked, AOF on and rewritten, config persisted).
Goals (issue 7): backup <= 1.5 x bgsave + 1 s, restore <= 2 x load + 1 s.

Writes benchmarks/results/<date>-redis.json and prints a table (`--json`: the JSON instead).

    make bench-redis      # or: .venv/bin/python benchmarks/redis_backup_restore.py --runs 3 --keys 1000000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from erlmcp_dr.paths import ensure_collection_importable  # noqa: E402

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import backup as _redis_backup  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import restore as _redis_restore  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.modules import redis_backup, redis_restore  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GOALS = {"backup_vs_bgsave": (1.5, 1.0), "restore_vs_load": (2.0, 1.0)}  # (factor, seconds): t <= f * floor + s
WAIT = 600.0
POLL = 0.01


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One daemonized redis-server in `home` (config, data dir, log), stopped by SHUTDOWN."""

    def __init__(self, home: Path, appendonly: bool = True) -> None:
        self.home, self.port = home, _free_port()
        self.data = home / "data"
        self.conf = home / "redis.conf"
        self.data.mkdir(parents=True, exist_ok=True)
        self.conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", "daemonize yes", f"pidfile {home}/redis.pid",
            f"logfile {home}/redis.log", f"dir {self.data}", "dbfilename dump.rdb",
            f"appendonly {'yes' if appendonly else 'no'}", "appenddirname appendonlydir", "appendfsync everysec",
            'save ""', "enable-debug-command local", "",
        ]))

    def start(self) -> float:
        """Start it; the seconds from the start command to loading:0."""
        began = time.monotonic()
        subprocess.run(["redis-server", str(self.conf)], check=True, capture_output=True, timeout=WAIT)
        wait_for(self._loaded, WAIT, interval=POLL, what=f"redis-server on {self.port} loaded")
        return time.monotonic() - began

    def _loaded(self) -> bool:
        try:
            with self.client() as client:
                return int(client.info("persistence")["loading"]) == 0
        except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=WAIT, decode_responses=True)

    def stop(self) -> None:
        try:
            with self.client() as client:
                client.shutdown(nosave=True)
        except redis.exceptions.ConnectionError:
            pass


def _params(module: Any, **values: Any) -> dict[str, Any]:
    spec = module.argument_spec()
    params = {name: option.get("default") for name, option in spec.items()}
    params.update(values)
    return params


def bare_bgsave(server: Server) -> float:
    with server.client() as client:
        saves = int(client.info("persistence")["rdb_saves"])
        began = time.monotonic()
        client.bgsave()

        def done() -> bool:
            info = client.info("persistence")
            return int(info["rdb_bgsave_in_progress"]) == 0 and int(info["rdb_saves"]) > saves

        wait_for(done, WAIT, interval=POLL, what="BGSAVE")
        return time.monotonic() - began


def backup(server: Server, store: Path, backup_id: str) -> tuple[float, dict[str, Any]]:
    params = _params(redis_backup, login_port=server.port, store_dir=str(store), backup_id=backup_id,
                     node_name="bench", poll_interval=POLL)
    began = time.monotonic()
    result = _redis_backup.run(params)
    return time.monotonic() - began, result


def own_load(rdb: Path, folder: Path) -> float:
    """redis-server's own load of this RDB (AOF off), start command to loading:0."""
    server = Server(folder, appendonly=False)
    shutil.copyfile(rdb, server.data / "dump.rdb")
    try:
        return server.start()
    finally:
        server.stop()


def restore(server: Server, store: Path, backup_id: str) -> tuple[float, dict[str, Any]]:
    params = _params(redis_restore, login_port=server.port, store_dir=str(store), backup=backup_id,
                     start_command=["redis-server", str(server.conf)], poll_interval=POLL)
    began = time.monotonic()
    result = _redis_restore.run(params)
    return time.monotonic() - began, result


def one_round(root: Path, keys: int, index: int) -> dict[str, Any]:
    folder = root / f"round-{index}"
    server = Server(folder / "server")
    server.start()
    try:
        with server.client() as client:
            client.execute_command("DEBUG", "POPULATE", keys, "key", 16)
            client.bgrewriteaof()
        wait_for(lambda: _no_rewrite(server), WAIT, interval=POLL, what="the first AOF rewrite")
        # The backup first: it waits for the server's clock to pass LASTSAVE (so that LASTSAVE proves its save),
        # which a bare BGSAVE just before would add up to a second to.
        backup_s, made = backup(server, folder / "store", f"bench-{index}")
        bgsave = bare_bgsave(server)
        load_s = own_load(folder / "store" / f"bench-{index}.rdb", folder / "floor")
        with server.client() as client:
            client.flushall()
        restore_s, restored = restore(server, folder / "store", f"bench-{index}")
        assert restored["keys_after"] == {"db0": keys}, restored["keys_after"]
        return {"keys": keys, "rdb_bytes": made["size"], "bgsave_s": round(bgsave, 3), "backup_s": round(backup_s, 3),
                "backup_durations": made["durations"], "load_s": round(load_s, 3), "restore_s": round(restore_s, 3),
                "restore_durations": restored["durations"]}
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _no_rewrite(server: Server) -> bool:
    with server.client() as client:
        info = client.info("persistence")
    return not int(info["aof_rewrite_in_progress"]) and not int(info["aof_rewrite_scheduled"])


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    med = {name: round(statistics.median(r[name] for r in runs), 3)
           for name in ("bgsave_s", "backup_s", "load_s", "restore_s")}
    goals = {}
    for goal, (measured, floor) in {"backup_vs_bgsave": ("backup_s", "bgsave_s"),
                                    "restore_vs_load": ("restore_s", "load_s")}.items():
        factor, seconds = GOALS[goal]
        limit = factor * med[floor] + seconds
        ratio = round(med[measured] / med[floor], 2)
        goals[goal] = {"measured_s": med[measured], "floor_s": med[floor], "ratio": ratio,
                       "limit_s": round(limit, 3), "goal": f"<= {factor} x floor + {seconds} s",
                       "met": med[measured] <= limit}
    return {"median": med, "goals": goals}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="print the JSON result instead of a table")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-redis-"))
    try:
        runs = [one_round(root, args.keys, i) for i in range(args.runs)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {"date": datetime.date.today().isoformat(), "runs": runs, "load_avg": os.getloadavg(),
              "cpus": os.cpu_count(), "redis_server": _version(), **summarize(runs)}
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{result['date']}-redis.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.runs} runs of {args.keys} keys ({runs[0]['rdb_bytes']} B RDB); medians; written to {out}")
    for name, goal in result["goals"].items():
        print(f"{name:18} {goal['measured_s']:7.3f} s vs floor {goal['floor_s']:7.3f} s  ratio {goal['ratio']:5.2f}  "
              f"limit {goal['limit_s']:7.3f} s  {'met' if goal['met'] else 'NOT met'}")
    return 0


def _version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout
    return out.strip()


if __name__ == "__main__":
    sys.exit(main())
