"""redis_restore on the lab's real redis-server: every key and value back, still there after a restart with
AOF on (loaded from the AOF alone), replicas in sync, a re-run that changes nothing, and bad backups refused
with the server untouched."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import redis_client, redis_login_args, run_module, wait_redis_replicated

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402

DATA = {f"key:{i}": f"value-{i}" for i in range(300)}


def _fill(cfg: lab.LabConfig) -> None:
    with redis_client(cfg, "redis-a") as client:
        client.flushall()
        client.mset(DATA)
    with redis_client(cfg, "redis-a", db=3) as client:
        client.hset("a-hash", mapping={"f1": "1", "f2": "2"})
        client.rpush("a-list", "x", "y", "z")


def _holds_the_data(cfg: lab.LabConfig, node: str) -> bool:
    with redis_client(cfg, node) as client:
        if client.dbsize() != len(DATA) or client.mget(list(DATA)) != list(DATA.values()):
            return False
    with redis_client(cfg, node, db=3) as client:
        return client.hgetall("a-hash") == {"f1": "1", "f2": "2"} and client.lrange("a-list", 0, -1) == ["x", "y", "z"]


def _backup(cfg: lab.LabConfig, store: Path, backup_id: str) -> dict:
    result = run_module("erlmcp.dr.redis_backup", dict(redis_login_args(cfg, "redis-a"), store_dir=str(store),
                                                       backup_id=backup_id, poll_interval=0.05))
    assert result["verified"], result
    return result


def _restore(cfg: lab.LabConfig, store: Path, check: bool = False, **extra) -> dict:
    node = cfg.redis_node("redis-a")
    args = dict(redis_login_args(cfg, "redis-a"), store_dir=str(store), poll_interval=0.05,
                start_command=["redis-server", str(node.conf_file)])
    args.update(extra)
    return run_module("erlmcp.dr.redis_restore", args, check=check)


def _run_id(cfg: lab.LabConfig) -> str:
    with redis_client(cfg, "redis-a") as client:
        return client.info("server")["run_id"]


def test_restore_brings_every_key_back_replicas_follow_and_it_survives_a_restart_with_aof_on(fresh_lab, tmp_path):
    cfg, store = fresh_lab, tmp_path / "store"
    _fill(cfg)
    backup = _backup(cfg, store, "before-the-accident")
    with redis_client(cfg, "redis-a") as client:
        client.flushall()
        client.set("written-after-the-backup", "1")
    result = _restore(cfg, store, backup="latest")
    assert not result["failed"] and result["changed"] and not result["rolled_back"], result
    assert result["backup_id"] == "before-the-accident"
    assert result["keys_before"] == {"db0": 1}
    assert result["keys_after"] == backup["keys_per_db"] == {"db0": 300, "db3": 2}
    assert _holds_the_data(cfg, "redis-a") and result["sampled_keys"] == 20 + 2
    with redis_client(cfg, "redis-a") as client:
        assert client.get("written-after-the-backup") is None
        assert client.info("persistence")["aof_enabled"] == 1
    assert sorted(r["port"] for r in result["replicas"]) == [cfg.redis_node(n).port for n in ("redis-b", "redis-c")]
    wait_redis_replicated(cfg)
    assert _holds_the_data(cfg, "redis-b") and _holds_the_data(cfg, "redis-c")
    rollback = Path(result["rollback_dir"])
    assert (rollback / "dump.rdb").is_file() and (rollback / "appendonlydir").is_dir()

    again = _restore(cfg, store, backup="before-the-accident")
    assert not again["failed"] and not again["changed"], again

    # The seeds' bug must be impossible: stop the server, remove its RDB, start it: the data comes from the AOF.
    node = cfg.redis_node("redis-a")
    assert "appendonly yes" in node.conf_file.read_text()
    with redis_client(cfg, "redis-a") as client:
        client.shutdown(nosave=True)
    wait_for(lambda: lab._lab_redis_pid(node) is None, 30, what="redis-a stopped")
    (node.data_dir / "dump.rdb").unlink()
    lab.up(cfg)
    assert _holds_the_data(cfg, "redis-a")
    with redis_client(cfg, "redis-a") as client:
        assert client.info("persistence")["aof_enabled"] == 1


@pytest.fixture(scope="module")
def good_store(shared_lab: lab.LabConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one verified backup ("good") of the shared lab's Redis primary."""
    store = tmp_path_factory.mktemp("redis-store") / "store"
    _fill(shared_lab)
    _backup(shared_lab, store, "good")
    return store


def _copy_backup(store: Path, to: Path, backup_id: str, content: bytes | None = None, **metadata_changes) -> None:
    """A store with `good` copied as backup_id, its file replaced by content (sha256 updated to match)."""
    to.mkdir(parents=True, exist_ok=True)
    metadata = json.loads((store / "good.json").read_text())
    data = content if content is not None else (store / "good.rdb").read_bytes()
    (to / f"{backup_id}.rdb").write_bytes(data)
    metadata.update(id=backup_id, sha256=hashlib.sha256(data).hexdigest(), **metadata_changes)
    (to / f"{backup_id}.json").write_text(json.dumps(metadata))


def _damaged(store: Path, to: Path) -> str:
    shutil.copytree(store, to)
    data = bytearray((to / "good.rdb").read_bytes())
    data[30] ^= 0xFF
    (to / "good.rdb").write_bytes(bytes(data))
    return "good"


def _rejected_by_check(store: Path, to: Path) -> str:
    good = (store / "good.rdb").read_bytes()
    _copy_backup(store, to, "truncated", content=good[: len(good) // 2])
    return "truncated"


def _newer_rdb(store: Path, to: Path) -> str:
    good = (store / "good.rdb").read_bytes()
    _copy_backup(store, to, "from-7.2", content=b"REDIS0011" + good[9:], rdb_version=11, redis_version="7.2.4")
    return "from-7.2"


def _empty(store: Path, to: Path) -> str:
    to.mkdir()
    return "latest"


def _unknown(store: Path, to: Path) -> str:
    shutil.copytree(store, to)
    return "no-such-backup"


@pytest.mark.parametrize("make, needle", [
    (_damaged, "backup good is damaged: the sha256 of"),
    (_rejected_by_check, "backup truncated fails redis-check-rdb"),
    (_newer_rdb, "holds RDB version 11 (written by Redis 7.2.4), newer than Redis 7.0"),
    (_empty, "holds no backup (store_dir)"),
    (_unknown, "no backup 'no-such-backup' in the store"),
])
def test_a_bad_backup_is_refused_with_the_server_untouched(untouched, good_store, tmp_path, make, needle):
    backup = make(good_store, tmp_path / "store")
    run_id = _run_id(untouched)
    result = _restore(untouched, tmp_path / "store", backup=backup)
    assert result["failed"] and needle in result["msg"], result["msg"]
    assert _run_id(untouched) == run_id and _holds_the_data(untouched, "redis-a")


def test_a_wrong_password_and_check_mode_touch_nothing(untouched, good_store):
    run_id = _run_id(untouched)
    wrong = _restore(untouched, good_store, login_password="wrong")
    assert wrong["failed"] and "(login_password)" in wrong["msg"] and "wrong" not in wrong["msg"].replace(
        "wrong password", "")
    planned = _restore(untouched, good_store, check=True)
    assert not planned["failed"] and planned["backup_id"] == "good", planned
    assert _run_id(untouched) == run_id and _holds_the_data(untouched, "redis-a")
    assert not list(untouched.redis_node("redis-a").data_dir.glob("erlmcp-dr-rollback-*"))


def _other_keys(metadata: dict) -> dict:
    return {"rdb_keys": 999}


def _other_value(metadata: dict) -> dict:
    samples = metadata["samples"]
    key = sorted(samples["db0"])[0]
    samples["db0"][key] = "0" * 64
    return {"samples": samples}


@pytest.mark.parametrize("lie, problem", [
    (_other_keys, "the server loaded 302 keys, the backup holds 999"),
    (_other_value, "1 of 22 sampled values differ from the backup's: db0:key:"),
])
def test_a_restore_that_does_not_verify_puts_the_rollback_point_back_and_says_so(fresh_lab, tmp_path, lie, problem):
    cfg, store = fresh_lab, tmp_path / "store"
    _fill(cfg)
    _backup(cfg, store, "good")
    lying = tmp_path / "lying"
    # the file is sound, its metadata promises other keys or another value
    _copy_backup(store, lying, "lying", **lie(json.loads((store / "good.json").read_text())))
    with redis_client(cfg, "redis-a") as client:
        client.flushall()
        client.set("the-current-dataset", "1")
    result = _restore(cfg, lying, backup="lying")
    assert result["failed"] and result["rolled_back"], result
    assert f"did not verify after loading ({problem}" in result["msg"], result["msg"]
    assert "was put back" in result["msg"] and result["keys_after"] == {"db0": 1}
    with redis_client(cfg, "redis-a") as client:
        assert client.get("the-current-dataset") == "1" and client.dbsize() == 1
        assert client.info("persistence")["aof_enabled"] == 1
    assert "appendonly yes" in cfg.redis_node("redis-a").conf_file.read_text()


def test_a_restore_cut_off_with_the_server_stopped_is_finished_by_the_next_run(fresh_lab, tmp_path):
    """A fault mid-restore: the server was stopped and the backup put in place, then the start failed.
    The next run finishes it from where it stopped; the dataset ends as the backup's, never empty."""
    cfg, store = fresh_lab, tmp_path / "store"
    node = cfg.redis_node("redis-a")
    _fill(cfg)
    _backup(cfg, store, "good")
    with redis_client(cfg, "redis-a") as client:
        client.set("written-after-the-backup", "1")
    cut = _restore(cfg, store, backup="good", start_command=["/bin/false"])
    assert cut["failed"] and "start_command ['/bin/false'] exited 1" in cut["msg"], cut["msg"]
    assert "run the restore again (with data_dir" in cut["msg"] and cut["rollback_dir"]
    assert lab._lab_redis_pid(node) is None  # left stopped, the dataset from before kept aside
    assert (Path(cut["rollback_dir"]) / "dump.rdb").is_file()

    blind = _restore(cfg, store, backup="good")
    assert blind["failed"] and "(data_dir)" in blind["msg"] and "nothing accepts connections" in blind["msg"]

    finished = _restore(cfg, store, backup="good", data_dir=str(node.data_dir))
    assert not finished["failed"] and finished["changed"] and finished["resumed_from"] == "placed", finished
    assert finished["rollback_dir"] == cut["rollback_dir"]
    assert _holds_the_data(cfg, "redis-a")
    with redis_client(cfg, "redis-a") as client:
        assert client.get("written-after-the-backup") is None
        assert client.info("persistence")["aof_enabled"] == 1
    wait_redis_replicated(cfg)
    assert _holds_the_data(cfg, "redis-b")
    again = _restore(cfg, store, backup="good", data_dir=str(node.data_dir))
    assert not again["failed"] and not again["changed"] and again["resumed_from"] is None


def test_a_second_restore_while_one_runs_is_refused_and_touches_nothing(fresh_lab, tmp_path):
    import os
    import tempfile
    import threading

    cfg, store = fresh_lab, tmp_path / "store"
    node = cfg.redis_node("redis-a")
    _fill(cfg)
    _backup(cfg, store, "good")
    gate = Path(tempfile.mkdtemp(prefix="erlmcp-dr-gate-"))
    gate.chmod(0o755)  # the start command runs as the lab OS user
    # The first restore's server starts only once the test says so (a poll in the start command, bounded by
    # wait_timeout), which holds that restore in the middle, with the server stopped.
    held_start = ["sh", "-c", f'while [ ! -e {gate}/go ]; do sleep 0.05; done; exec redis-server {node.conf_file}']
    first: dict = {}
    worker = threading.Thread(target=lambda: first.update(_restore(cfg, store, backup="good", wait_timeout=120,
                                                                   start_command=held_start)))
    worker.start()
    try:
        wait_for(lambda: list(node.data_dir.glob("erlmcp-dr-rollback-*/restore.json")) and
                 json.loads(next(node.data_dir.glob("erlmcp-dr-rollback-*/restore.json")).read_text())["phase"]
                 == "placed", 60, what="the first restore holding with the server stopped")
        second = _restore(cfg, store, backup="good", data_dir=str(node.data_dir))
        assert second["failed"] and "another restore of" in second["msg"] and "is running" in second["msg"], second
        assert len(list(node.data_dir.glob("erlmcp-dr-rollback-*"))) == 1  # the second made no rollback point
    finally:
        (gate / "go").write_text("")
        worker.join(timeout=180)
        shutil.rmtree(gate, ignore_errors=True)
    assert not first["failed"] and first["changed"], first
    assert _holds_the_data(cfg, "redis-a")
    assert os.path.exists(node.data_dir / "erlmcp-dr-restore.json")


def test_a_restore_killed_with_the_server_stopped_is_finished_by_the_next_run(fresh_lab, tmp_path):
    """kill -9 of the whole ansible process group while the server is stopped, then a re-run."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    from erlmcp_dr import paths

    cfg, store = fresh_lab, tmp_path / "store"
    node = cfg.redis_node("redis-a")
    _fill(cfg)
    _backup(cfg, store, "good")
    with redis_client(cfg, "redis-a") as client:
        client.set("written-after-the-backup", "1")
    gate = Path(tempfile.mkdtemp(prefix="erlmcp-dr-gate-"))
    gate.chmod(0o755)
    never = ["sh", "-c", f'while [ ! -e {gate}/go ]; do sleep 0.05; done; exec redis-server {node.conf_file}']
    args = dict(login_port=node.port, login_password=lab.LAB_PASSWORD, store_dir=str(store), backup="good",
                start_command=never, poll_interval=0.05)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(paths.collections_path()))
    proc = subprocess.Popen([str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "erlmcp.dr.redis_restore",
                             "-a", json.dumps(args), "-e", f"ansible_python_interpreter={sys.executable}"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        journal = lambda: next(iter(node.data_dir.glob("erlmcp-dr-rollback-*/restore.json")), None)  # noqa: E731
        wait_for(lambda: journal() and json.loads(journal().read_text())["phase"] == "placed", 60,
                 what="the restore holding with the server stopped")
    finally:
        for pid in [proc.pid, *_descendants(proc.pid)]:  # the module runs in a session of its own: each by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
        (gate / "go").write_text("")  # a start command that outlived the kill would start the server now
    wait_for(lambda: lab._lab_redis_pid(node) is None or _loaded_now(cfg), 30, what="the killed restore's leftovers")
    finished = _restore(cfg, store, backup="good", data_dir=str(node.data_dir))
    assert not finished["failed"] and finished["changed"], finished
    assert finished["resumed_from"] in ("placed", "started"), finished
    assert _holds_the_data(cfg, "redis-a")
    with redis_client(cfg, "redis-a") as client:
        assert client.get("written-after-the-backup") is None and client.info("persistence")["aof_enabled"] == 1
    shutil.rmtree(gate, ignore_errors=True)


def _descendants(pid: int) -> list[int]:
    """Every process below pid (children first found through /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _loaded_now(cfg: lab.LabConfig) -> bool:
    try:
        with redis_client(cfg, "redis-a") as client:
            return client.info("persistence")["loading"] == 0
    except Exception:
        return False


def test_a_server_started_without_a_config_file_is_refused_before_anything_changes(good_store, tmp_path):
    import subprocess

    import redis

    port = lab.free_port_base()
    data = tmp_path / "bare"
    data.mkdir()
    subprocess.run(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
                    "--dir", str(data), "--pidfile", str(data / "pid"), "--requirepass", lab.LAB_PASSWORD,
                    "--logfile", str(data / "log")], check=True, timeout=30)
    client = redis.Redis(port=port, password=lab.LAB_PASSWORD, decode_responses=True)
    try:
        wait_for(lambda: _answers(client), 30, what="the bare redis-server answering")
        client.set("mine", "1")
        run_id = client.info("server")["run_id"]
        result = run_module("erlmcp.dr.redis_restore", dict(
            login_port=port, login_password=lab.LAB_PASSWORD, store_dir=str(good_store),
            start_command=["redis-server"]))
        assert result["failed"] and "was started without a config file" in result["msg"], result["msg"]
        assert client.info("server")["run_id"] == run_id and client.get("mine") == "1"
        assert client.config_get("appendonly") == {"appendonly": "no"} and not list(data.glob("erlmcp-dr-*"))
    finally:
        with contextlib.suppress(redis.exceptions.ConnectionError):
            client.shutdown(nosave=True)


def _answers(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False
