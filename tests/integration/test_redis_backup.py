"""redis_backup on the lab's real redis-server: a verified copy, idempotence by id, check mode that touches
nothing, retention that keeps the newest verified backup, and bad inputs that leave server and store as they were."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import redis_client, redis_login_args, run_module

from erlmcp_dr.lab import lifecycle as lab


@pytest.fixture
def dataset(untouched: lab.LabConfig) -> dict[int, int]:
    """The shared lab's Redis primary holding 50 keys in db0 and 5 in db1 (and nothing else)."""
    with redis_client(untouched, "redis-a") as client:
        client.flushall()
        client.mset({f"key:{i}": f"value-{i}" for i in range(50)})
    with redis_client(untouched, "redis-a", db=1) as client:
        client.mset({f"other:{i}": str(i) for i in range(5)})
    return {0: 50, 1: 5}


def _backup(cfg: lab.LabConfig, store: Path, check: bool = False, **extra) -> dict:
    args = dict(redis_login_args(cfg, "redis-a"), store_dir=str(store), node_name="redis-a", poll_interval=0.05)
    args.update(extra)
    return run_module("erlmcp.dr.redis_backup", args, check=check)


def _saves(cfg: lab.LabConfig) -> tuple[int, int]:
    with redis_client(cfg, "redis-a") as client:
        info = client.info("persistence")
    return info["rdb_saves"], info["rdb_last_save_time"]


def test_a_backup_is_a_verified_copy_with_its_metadata(untouched, dataset, tmp_path):
    store = tmp_path / "store"
    saves, lastsave = _saves(untouched)
    result = _backup(untouched, store)
    assert not result["failed"] and result["changed"] and result["verified"], result
    assert _saves(untouched)[0] == saves + 1 and result["lastsave"] > lastsave  # one BGSAVE, LASTSAVE advanced
    path = Path(result["path"])
    assert path.parent == store and path.name == result["backup_id"] + ".rdb"
    assert result["backup_id"].startswith("redis-a-")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == result["sha256"] and path.stat().st_size == result["size"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert result["keys_per_db"] == {"db0": 50, "db1": 5} and result["keys_exact"] and result["rdb_keys"] == 55
    assert result["rdb_version"] == 10 and result["redis_version"].startswith("7.")
    metadata = json.loads(Path(result["metadata_path"]).read_text())
    assert metadata == result["metadata"] and metadata["verified"] and metadata["sha256"] == result["sha256"]
    assert {db: len(keys) for db, keys in metadata["samples"].items()} == {"db0": 20, "db1": 5}
    assert set(metadata["samples"]["db1"]) == {f"other:{i}" for i in range(5)}
    source = metadata["source"]
    assert source["name"] == "redis-a" and source["port"] == untouched.redis_node("redis-a").port
    assert subprocess.run(["redis-check-rdb", str(path)], capture_output=True, check=False).returncode == 0
    assert [p.name for p in store.iterdir() if p.name.startswith(".")] == []  # no temp file left
    assert lab.LAB_PASSWORD not in json.dumps(result) + Path(result["metadata_path"]).read_text()


def test_the_same_backup_id_again_changes_nothing_unless_its_copy_was_damaged(untouched, dataset, tmp_path):
    store = tmp_path / "store"
    first = _backup(untouched, store, backup_id="nightly-1")
    assert first["changed"] and first["verified"]
    saves = _saves(untouched)[0]
    again = _backup(untouched, store, backup_id="nightly-1")
    assert not again["failed"] and not again["changed"] and again["sha256"] == first["sha256"]
    assert _saves(untouched)[0] == saves  # no BGSAVE
    damaged = bytearray(Path(first["path"]).read_bytes())
    damaged[20] ^= 0xFF
    Path(first["path"]).write_bytes(bytes(damaged))
    redone = _backup(untouched, store, backup_id="nightly-1")
    assert redone["changed"] and redone["verified"] and _saves(untouched)[0] == saves + 1
    assert hashlib.sha256(Path(redone["path"]).read_bytes()).hexdigest() == redone["sha256"]


def test_check_mode_touches_nothing_not_even_a_bgsave(untouched, dataset, tmp_path):
    store = tmp_path / "store"
    before = _saves(untouched)
    result = _backup(untouched, store, check=True, retention_count=1)
    assert not result["failed"] and result["changed"], result
    assert result["source_path"] == str(untouched.redis_node("redis-a").data_dir / "dump.rdb")
    assert result["would_delete"] == [] and result["deleted"] == []
    assert _saves(untouched) == before and not store.exists()


def test_retention_by_count_and_age_keeps_the_newest_verified_backup(untouched, dataset, tmp_path):
    store = tmp_path / "store"
    ids = [_backup(untouched, store, backup_id=f"b{i}")["backup_id"] for i in range(3)]
    fourth = _backup(untouched, store, backup_id="b3", retention_count=2)
    assert fourth["verified"] and fourth["deleted"] == ids[:2]
    assert sorted(p.name for p in store.iterdir()) == ["b2.json", "b2.rdb", "b3.json", "b3.rdb"]
    planned = _backup(untouched, store, check=True, backup_id="b4", retention_max_age=0)
    assert planned["would_delete"] == ["b2", "b3"] and (store / "b3.rdb").exists()  # check mode deletes nothing
    # the newest verified backup survives a rule that would delete every backup
    unverified = _backup(untouched, store, backup_id="b5", check_rdb_path="/bin/false", retention_max_age=0)
    assert unverified["failed"] and not unverified["verified"]
    kept = _backup(untouched, store, backup_id="b3", retention_max_age=0)
    assert not kept["changed"] or kept["deleted"]
    assert (store / "b3.rdb").exists() and (store / "b3.json").exists()
    assert kept["deleted"] == ["b2", "b5"]


def test_a_copy_that_fails_redis_check_rdb_is_never_marked_verified(untouched, dataset, tmp_path):
    store = tmp_path / "store"
    result = _backup(untouched, store, backup_id="bad", check_rdb_path="/bin/false")
    assert result["failed"] and "failed redis-check-rdb" in result["msg"] and "verified: false" in result["msg"]
    assert json.loads((store / "bad.json").read_text())["verified"] is False
    assert _backup(untouched, store, backup_id="bad")["changed"]  # not taken for done: made again, verified


@pytest.mark.parametrize("change, needle", [
    ({"login_password": "wrong"}, "password was rejected (login_password)"),
    ({"login_host": "no-such-host.invalid"}, "cannot resolve the Redis host 'no-such-host.invalid' (login_host)"),
    ({"bgsave_timeout": 0}, "bgsave_timeout is 0.0: expected a number of seconds greater than 0"),
    ({"backup_id": "../escape"}, "is not a backup id"),
    ({"retention_count": 0}, "retention_count is 0: expected 1 or more"),
    ({"sample_size": -1}, "sample_size is -1: expected 0 (no sampled values) to 1000 keys per database"),
])
def test_bad_inputs_fail_clearly_before_any_bgsave(untouched, dataset, tmp_path, change, needle):
    store = tmp_path / "store"
    before = _saves(untouched)
    result = _backup(untouched, store, **change)
    assert result["failed"] and needle in result["msg"], result["msg"]
    assert _saves(untouched) == before and not store.exists()
    assert "wrong" not in result["msg"]


def test_a_store_that_cannot_be_written_fails_before_any_bgsave(untouched, dataset, tmp_path):
    before = _saves(untouched)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    result = _backup(untouched, a_file)
    assert result["failed"] and f"the store {a_file} is not a directory (store_dir)" in result["msg"]
    unwritable = Path("/proc/self/erlmcp-store")
    result = _backup(untouched, unwritable)
    assert result["failed"] and "is not writable" in result["msg"] and "(store_dir)" in result["msg"]
    assert _saves(untouched) == before
    if os.geteuid() != 0:  # root writes anywhere: the read-only folder case needs another user
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert "is not writable" in _backup(untouched, ro / "store")["msg"]
