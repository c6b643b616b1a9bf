"""The Redis runbooks through the CLI (`runbook run`), as an operator runs them, on the lab's real redis-server:
backup then restore with every key back and replicas in sync, a re-run that changes nothing, a restore killed
after the server was stopped and finished by the next run, and a second operator turned away (exit 3)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from runbook_helpers import (
    DEADLINE,
    changed_steps,
    inventory_copy,
    inventory_path,
    lock_held,
    redis_client,
    run_json,
    runbook_cli,
    summary,
    wait_for,
    wait_redis_replicated,
)

from erlmcp_dr import paths
from erlmcp_dr.guard import kill_tree
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import plan as _redis_plan  # noqa: E402

pytestmark = pytest.mark.integration

DATA = {f"key:{i}": f"value-{i}" for i in range(200)}
PLAYBOOKS = paths.collection_root() / "playbooks"


def _fill(cfg: lab.LabConfig) -> None:
    with redis_client(cfg, "redis-a") as client:
        client.flushall()
        client.mset(DATA)
    with redis_client(cfg, "redis-a", db=2) as client:
        client.hset("a-hash", mapping={"f1": "1", "f2": "2"})


def _holds_the_data(cfg: lab.LabConfig, node: str) -> bool:
    with redis_client(cfg, node) as client:
        if client.dbsize() != len(DATA) or client.mget(list(DATA)) != list(DATA.values()):
            return False
    with redis_client(cfg, node, db=2) as client:
        return client.hgetall("a-hash") == {"f1": "1", "f2": "2"}


def _mutate(cfg: lab.LabConfig) -> None:
    with redis_client(cfg, "redis-a") as client:
        client.flushall()
        client.set("written-after-the-backup", "1")


def _backup(cfg: lab.LabConfig, backup_id: str) -> dict[str, Any]:
    _, result = run_json("run", "redis_backup", "-i", str(inventory_path(cfg)), "-e", f"backup_id={backup_id}",
                         expect_rc=0)
    return result


def _restore(inventory: Path, *extra: str, expect_rc: int = 0) -> dict[str, Any]:
    _, result = run_json("run", "redis_restore", "-i", str(inventory), *extra, "--yes", expect_rc=expect_rc)
    return result


def _server_id(cfg: lab.LabConfig) -> tuple[str, dict[str, Any]]:
    with redis_client(cfg, "redis-a") as client:
        return client.info("server")["run_id"], client.info("keyspace")


def test_backup_restore_through_the_cli_brings_every_key_back_and_a_rerun_changes_nothing(fresh_lab, home):
    cfg = fresh_lab
    _fill(cfg)
    backup = summary(_backup(cfg, "nightly"))
    assert backup["completed"] and backup["verified"] and backup["node"] == "redis-a", backup
    assert backup["keys"] == {"db0": len(DATA), "db2": 1} and backup["bytes"] > 0 and len(backup["sha256"]) == 64
    assert backup["lock"]["key"] == _redis_plan.lock_key(
        [{"host": "127.0.0.1", "port": n.port} for n in cfg.redis_nodes])
    again = _backup(cfg, "nightly")
    assert changed_steps(again) == [] and summary(again)["completed"], again["steps"]

    _mutate(cfg)
    result = _restore(inventory_path(cfg), "-e", "backup=nightly")
    done = summary(result)
    assert done["completed"] and done["end_state"]["ok"] and done["dataset"] == "backup", done
    assert done["keys_before"] == {"db0": 1} and done["keys_after"] == {"db0": len(DATA), "db2": 1}
    assert done["sha256"] == backup["sha256"] and done["bytes"] == backup["bytes"]
    assert int(done["data_loss_seconds"]) >= 0 and sorted(r["port"] for r in done["replicas"]) == sorted(
        cfg.redis_node(n).port for n in ("redis-b", "redis-c"))
    assert _holds_the_data(cfg, "redis-a")
    wait_redis_replicated(cfg)
    assert _holds_the_data(cfg, "redis-b") and _holds_the_data(cfg, "redis-c")

    rerun = _restore(inventory_path(cfg))  # latest = nightly, which the primary holds already
    assert changed_steps(rerun) == [] and summary(rerun)["dataset"] == "backup", rerun["steps"]


def _blocking_start(cfg: lab.LabConfig, signal_file: Path) -> Path:
    """An inventory whose start command for redis-a says it ran (its PID in signal_file) and never returns:
    the restore is cut off with the server stopped and the backup in place."""
    def change(data: dict[str, Any]) -> None:
        host = data["all"]["children"]["redis"]["hosts"]["redis-a"]
        host["redis_start_command"] = ["sh", "-c", 'echo $$ > "$0"; exec tail -f /dev/null', str(signal_file)]

    return inventory_copy(cfg, "blocking-start", change)


def _playbook_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(paths.collections_path()),
               ANSIBLE_CONFIG=str(paths.collection_root() / "ansible.cfg"))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    return env


def _kill_once_started(inventory: Path, signal_file: Path) -> str:
    proc = subprocess.Popen([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                             str(PLAYBOOKS / "redis_restore.yml"), "-e", "backup=nightly"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env=_playbook_env(), start_new_session=True)
    try:
        with contextlib.suppress(WaitTimeout):  # the assertion below says what the run printed
            wait_for(lambda: _pid_in(signal_file) or proc.poll() is not None, DEADLINE, interval=0.05,
                     what="the restore to stop redis-a and run its start command")
    finally:
        kill_tree(proc.pid)  # ansible's workers run in sessions of their own: the group alone misses the module
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate(timeout=DEADLINE)[0]
        pid = _pid_in(signal_file)
        if pid:  # never leave the stand-in behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert pid, output[-4000:]
    return output


def _pid_in(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text.isdigit() else None


def test_a_restore_killed_with_the_server_stopped_is_finished_by_the_next_run(fresh_lab, home):
    cfg = fresh_lab
    _fill(cfg)
    _backup(cfg, "nightly")
    _mutate(cfg)
    signal_file = cfg.root / "redis" / "start-command-ran"  # written as the lab's Redis user, who owns this folder
    output = _kill_once_started(_blocking_start(cfg, signal_file), signal_file)
    assert signal_file.exists(), output[-3000:]
    import redis

    with pytest.raises(redis.exceptions.ConnectionError), redis_client(cfg, "redis-a") as client:  # stopped
        client.ping()
    data_dir = cfg.redis_node("redis-a").home / "data"
    assert [p.name for p in data_dir.glob("erlmcp-dr-rollback-*")], list(data_dir.iterdir())

    result = _restore(inventory_path(cfg), "-e", "backup=nightly")
    done = summary(result)
    assert done["completed"] and done["node"] == "redis-a" and done["resumed_from"] == "placed", done
    assert done["dataset"] == "backup" and any("cut off" in line for line in done["did"]), done
    assert _holds_the_data(cfg, "redis-a")
    with redis_client(cfg, "redis-a") as client:
        assert client.info("persistence")["aof_enabled"] == 1
    wait_redis_replicated(cfg)
    assert _holds_the_data(cfg, "redis-c")


def test_a_second_operator_is_turned_away_with_exit_3_and_nothing_changes(fresh_lab, home, tmp_path):
    """Another run holds the deployment's lock (a live ansible-playbook holding it until told to go on)."""
    cfg = fresh_lab
    _fill(cfg)
    _backup(cfg, "nightly")
    _mutate(cfg)
    before = _server_id(cfg)
    members = yaml.safe_load(inventory_path(cfg).read_text())["all"]["children"]["redis"]
    key = _redis_plan.lock_key([{"host": members["vars"]["redis_host"], "port": h["redis_port"]}
                                for h in members["hosts"].values()])
    with lock_held(cfg, key, "first-operator", tmp_path):
        cli = runbook_cli("run", "redis_restore", "-i", str(inventory_path(cfg)), "--yes", "--json")
        failover = runbook_cli("run", "redis_failover", "-i", str(inventory_path(cfg)), "-e", "candidate=redis-b",
                               "--yes", "--json")
    assert cli.rc == 3, cli
    assert "first-operator" in cli.stderr, cli.stderr
    assert _server_id(cfg) == before  # same process, same keys: the restore never started
    # The failover meets the same lock (one key per deployment, whatever the runbook): no role moved.
    assert failover.rc == 3 and "first-operator" in failover.stderr, failover
    roles = {}
    for node in ("redis-a", "redis-b", "redis-c"):
        with redis_client(cfg, node) as client:
            roles[node] = client.info("replication")["role"]
    assert roles == {"redis-a": "master", "redis-b": "slave", "redis-c": "slave"}, roles


def test_the_redis_runbooks_have_an_awx_survey():
    for name in ("redis_backup", "redis_restore"):
        cli = runbook_cli("survey", name)
        assert cli.rc == 0, cli
        assert "redis_password" in cli.stdout and "password" in cli.stdout, cli.stdout


def test_backup_to_s3_through_the_runbook(fresh_lab, home, moto):
    import boto3

    cfg = fresh_lab
    boto3.client("s3", endpoint_url=moto, region_name="us-east-1").create_bucket(Bucket="runbook-backups")

    def to_s3(data: dict[str, Any]) -> None:
        data["all"]["vars"].update(redis_s3_bucket="runbook-backups", redis_s3_prefix="lab",
                                   redis_s3_endpoint_url=moto, redis_s3_sse="AES256")

    inventory = inventory_copy(cfg, "s3", to_s3)
    _fill(cfg)
    _, result = run_json("run", "redis_backup", "-i", str(inventory), "-e", "store=s3", "-e", "backup_id=offsite",
                         expect_rc=0)
    done = summary(result)
    assert done["completed"] and done["verified"] and done["path"] == "s3://runbook-backups/lab/offsite.rdb", done
    _mutate(cfg)
    restored = summary(_restore(inventory, "-e", "store=s3"))
    assert restored["dataset"] == "backup" and restored["backup_id"] == "offsite", restored
    assert _holds_the_data(cfg, "redis-a")


def test_failover_runbook_moves_the_primary_points_the_app_and_a_rerun_changes_nothing(fresh_lab, home):
    import json

    cfg = fresh_lab
    _fill(cfg)
    inventory = str(inventory_path(cfg))
    _, result = run_json("run", "redis_failover", "-i", inventory, "-e", "candidate=redis-c", "--yes", expect_rc=0)
    done = summary(result)
    assert done["completed"] and done["end_state"]["ok"] and done["new_primary"] == "redis-c", done
    assert done["old_primary"] == "redis-a" and done["old_primary_fence"] == "failover"
    port = {n.name: n.port for n in cfg.redis_nodes}
    app = json.loads((cfg.root / "app" / "redis.json").read_text())
    assert app == {"redis": {"primary": f"127.0.0.1:{port['redis-c']}", "primary_node": "redis-c",
                             "replicas": [f"127.0.0.1:{port['redis-a']}", f"127.0.0.1:{port['redis-b']}"],
                             "replica_nodes": ["redis-a", "redis-b"]}}
    assert _holds_the_data(cfg, "redis-c")
    with redis_client(cfg, "redis-a") as client:
        assert client.info("replication")["role"] == "slave"

    _, again = run_json("run", "redis_failover", "-i", inventory, "--yes", expect_rc=0)
    assert changed_steps(again) == [] and summary(again)["new_primary"] == "redis-c", again["steps"]
