"""The pure parts of the Redis engines: retention, redis-check-rdb's output, ids, INFO facts, error sentences,
and the lab's Redis inventory. No server, no redis-py import where none is needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import client as rd  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import store  # noqa: E402

DAY = 86400


def _b(backup_id: str, lastsave: int, verified: bool = True) -> dict:
    return {"id": backup_id, "lastsave": lastsave, "verified": verified}


def test_retention_by_count_keeps_the_newest():
    backups = [_b("b1", 1), _b("b2", 2), _b("b3", 3), _b("b4", 4)]
    assert store.retention_plan(backups, now=10, keep_count=2) == ["b1", "b2"]
    assert store.retention_plan(backups, now=10) == []


def test_retention_by_age():
    backups = [_b("old", 0), _b("new", 9 * DAY)]
    assert store.retention_plan(backups, now=10 * DAY, max_age=7 * DAY) == ["old"]


def test_retention_never_deletes_the_newest_verified_backup():
    backups = [_b("good", 1), _b("broken", 5, verified=False)]
    assert store.retention_plan(backups, now=100 * DAY, max_age=0) == ["broken"]
    assert store.retention_plan(backups, now=100 * DAY, keep_count=1) == []  # "broken" is newer but unverified
    assert store.retention_plan([_b("x", 1, verified=False)], now=100 * DAY, max_age=0) == ["x"]


def test_check_output_is_parsed():
    output = """[offset 0] Checking RDB file dump.rdb
[offset 27] AUX FIELD redis-ver = '7.0.15'
[offset 53] AUX FIELD repl-offset = '1234'
[offset 99] \\o/ RDB looks OK! \\o/
[info] 55 keys read
[info] 3 expires
[info] 1 already expired
"""
    parsed = store.parse_check_output(output, 0)
    assert parsed["ok"] and parsed["aux"]["redis-ver"] == "7.0.15" and parsed["aux"]["repl-offset"] == "1234"
    assert (parsed["keys_read"], parsed["expires"], parsed["already_expired"]) == (55, 3, 1)
    assert not store.parse_check_output("--- RDB ERROR DETECTED ---", 1)["ok"]
    assert not store.parse_check_output(output, 1)["ok"]  # the exit status counts too


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x.json", "x.rdb", "x" * 129, "sp ace"])
def test_backup_ids_cannot_leave_the_store(bad):
    with pytest.raises(rd.RedisError, match="is not a backup id"):
        store.check_backup_id(bad)


def test_rdb_file_version_and_server_rdb_versions(tmp_path):
    (tmp_path / "a.rdb").write_bytes(b"REDIS0010\xfa")
    (tmp_path / "b.rdb").write_bytes(b"NOTREDIS")
    assert store.rdb_file_version(str(tmp_path / "a.rdb")) == 10
    assert store.rdb_file_version(str(tmp_path / "b.rdb")) is None
    assert [rd.rdb_version_of(v) for v in ("7.0.15", "7.2.4", "7.4.1", "6.2.6", "x")] == [10, 11, 12, 9, None]


def test_node_facts_from_info():
    replica = rd.node_facts({"role": "slave", "redis_version": "7.0.15", "master_host": "10.0.0.1",
                             "master_port": 6379, "master_link_status": "up", "slave_repl_offset": 42,
                             "master_repl_offset": 42, "db0": {"keys": 3, "expires": 0}, "db2": {"keys": 1},
                             "aof_enabled": 1, "rdb_saves": 2, "loading": 0})
    assert replica["role"] == "replica" and replica["link_status"] == "up" and replica["repl_offset"] == 42
    assert replica["keys_per_db"] == {"db0": 3, "db2": 1} and replica["total_keys"] == 4
    assert replica["persistence"]["aof_enabled"] and replica["rdb_version"] == 10
    primary = rd.node_facts({"role": "master", "redis_version": "7.0.15", "master_repl_offset": 7,
                             "slave0": {"ip": "127.0.0.1", "port": 1, "state": "online", "offset": 7, "lag": 0}})
    assert primary["role"] == "primary" and primary["replicas"][0]["state"] == "online"


def test_connection_errors_say_what_and_which_parameter():
    import redis

    params = {"host": "h", "port": 1, "password": "s3cret", "connect_timeout": 2}
    auth = rd.connect_error(redis.exceptions.AuthenticationError("WRONGPASS invalid username-password pair"), params)
    assert auth.kind == "auth" and "(login_password)" in str(auth) and "s3cret" not in str(auth)
    refused = rd.connect_error(redis.exceptions.ConnectionError("Error 111 connecting to h:1. Connection refused."),
                               params)
    assert refused.kind == "refused" and "h:1" in str(refused)
    dns = rd.connect_error(redis.exceptions.ConnectionError("Error -2 connecting to h:1. Name or service not known."),
                           params)
    assert dns.kind == "dns" and "(login_host)" in str(dns)


def test_module_utils_do_not_import_redis_py_until_connecting():
    code = ("import sys; from erlmcp_dr.paths import ensure_collection_importable; ensure_collection_importable(); "
            "from ansible_collections.erlmcp.dr.plugins.module_utils._redis import backup, info, store; "
            "sys.exit(1 if 'redis' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_lab_inventory_has_the_redis_group(tmp_path):
    cfg = lab.LabConfig(root=tmp_path / "lab", port_base=40000)
    inventory = lab.inventory(cfg)
    group = inventory["all"]["children"]["redis"]
    assert {name: host["redis_port"] for name, host in group["hosts"].items()} == {
        "redis-a": 40003, "redis-b": 40004, "redis-c": 40005}
    assert group["hosts"]["redis-b"]["redis_data_dir"] == f"{cfg.root}/redis/redis-b/data"
    assert group["hosts"]["redis-c"]["dr_region"] == "c" and group["vars"]["redis_host"] == "127.0.0.1"
    assert inventory["all"]["vars"]["redis_password"] == lab.LAB_PASSWORD
    assert "redis-a" in inventory["all"]["children"]["region_a"]["hosts"]


def test_free_port_base_leaves_room_for_redis():
    base = lab.free_port_base()
    assert lab.PORTS_PER_LAB == 9 and [n.port for n in lab.LabConfig(Path("/x"), base).redis_nodes] == [
        base + 3, base + 4, base + 5]


def _store_with(tmp_path: Path, *backups: dict) -> store.DirectoryStore:
    import json

    for backup in backups:
        (tmp_path / f"{backup['id']}.json").write_text(json.dumps(dict(backup, format=store.METADATA_FORMAT)))
    return store.DirectoryStore(str(tmp_path))


def test_restore_chooses_by_id_latest_verified_or_newest_before_a_time(tmp_path):
    from ansible_collections.erlmcp.dr.plugins.module_utils._redis import restore

    directory = _store_with(tmp_path, _b("monday", 100), _b("tuesday", 200), _b("broken", 300, verified=False))
    assert restore.choose(directory, "latest")["id"] == "tuesday"  # the newest VERIFIED one
    assert restore.choose(directory, "latest", before=200)["id"] == "monday"
    assert restore.choose(directory, "broken")["id"] == "broken"  # by id (restore then refuses it: not verified)
    with pytest.raises(rd.RedisError, match="no backup 'sunday' in the store .*; it holds monday, tuesday, broken"):
        restore.choose(directory, "sunday")
    with pytest.raises(rd.RedisError, match=r"holds no verified backup saved before 1970-01-01T00:00:50\+00:00"):
        restore.choose(directory, "latest", before=50)
    with pytest.raises(rd.RedisError, match=r"holds no backup \(store_dir\)"):
        restore.choose(store.DirectoryStore(str(tmp_path / "empty")), "latest")


def test_before_takes_a_unix_time_or_iso_8601():
    from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
    from ansible_collections.erlmcp.dr.plugins.module_utils._redis import restore

    assert restore.parse_time("1795610058", "before") == 1795610058
    assert restore.parse_time("1970-01-02T00:00:00Z", "before") == DAY
    assert restore.parse_time("1970-01-02T01:00:00+01:00", "before") == DAY
    assert restore.parse_time("1970-01-02T00:00:00", "before") == DAY  # UTC when no zone is named
    assert restore.parse_time(None, "before") is None
    with pytest.raises(ModuleFailure, match=r"before is 'yesterday': expected a Unix time or an ISO 8601 time"):
        restore.parse_time("yesterday", "before")


FAILED_CHECK = """[offset 0] Checking RDB file bad.rdb
[offset 27] AUX FIELD redis-ver = '7.0.15'
[offset 82] Selecting DB ID 0
--- RDB ERROR DETECTED ---
[offset 89] Internal error in RDB reading offset 0, function at rdb.c:529 -> Unknown RDB string encoding type 8
[additional info] While doing: read-object-value
[additional info] Reading key 'a'
[info] 1 keys read
[info] 0 expires
[info] 0 already expired
"""


def test_a_failed_check_gives_redis_check_rdbs_reason_not_its_counters():
    parsed = store.parse_check_output(FAILED_CHECK, 1)
    assert not parsed["ok"]
    assert parsed["reason"] == ("Unknown RDB string encoding type 8; While doing: read-object-value; "
                                "Reading key 'a'")
    crc = store.parse_check_output("--- RDB ERROR DETECTED ---\n[offset 122] RDB CRC error\n"
                                   "[additional info] While doing: check-sum\n[info] 2 keys read\n", 1)
    assert crc["reason"] == "RDB CRC error; While doing: check-sum"
    silent = store.parse_check_output("Segmentation fault\n", 139)
    assert silent["reason"] == "exit 139 without its verdict; its output ends: Segmentation fault"


def test_an_rdb_saved_without_its_checksum_is_not_ok():
    output = ("[offset 122] RDB file was saved with checksum disabled: no check performed.\n"
              "[offset 122] \\o/ RDB looks OK! \\o/\n[info] 2 keys read\n")
    parsed = store.parse_check_output(output, 0)
    assert not parsed["ok"] and not parsed["checksum"] and "checksum disabled (CRC64 0)" in parsed["reason"]
    assert "rdbchecksum yes" in parsed["reason"]


def test_the_metadata_hmac_covers_every_field_and_needs_the_key():
    metadata = {"id": "b1", "sha256": "ab" * 32, "rdb_keys": 3, "samples": {"db0": {"k": "d"}}}
    metadata["hmac"] = store.metadata_hmac(metadata, "key-1")
    assert store.hmac_problem(metadata, "key-1") is None
    assert store.hmac_problem(metadata, None) is None  # no key: nothing to check (and nothing detected)
    assert "does not match its HMAC" in store.hmac_problem(metadata, "key-2")
    for field, value in (("sha256", "cd" * 32), ("rdb_keys", 4), ("samples", {"db0": {"k": "e"}})):
        changed = dict(metadata, **{field: value})
        assert "does not match its HMAC" in store.hmac_problem(changed, "key-1"), field
    unsigned = dict((k, v) for k, v in metadata.items() if k != "hmac")
    assert "carries no HMAC" in store.hmac_problem(unsigned, "key-1")


def test_a_server_that_accepts_but_never_answers_is_given_up_within_connect_timeout(monkeypatch) -> None:
    """A frozen redis-server (SIGSTOP, a paused VM) still completes the TCP handshake in the kernel: the PING must be
    bounded by connect_timeout, not the 30 s read timeout later commands get (dr_drill's SIGSTOP fault measured a
    Redis failover of 195 s, every read of the frozen primary waiting 30 s)."""
    import socket

    import redis

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # never accepts: the kernel completes the handshakes, nothing ever answers
    pinged_with = []

    class Recording(redis.Redis):
        def ping(self, **options):
            pinged_with.append(self.connection_pool.connection_kwargs["socket_timeout"])
            return super().ping(**options)

    monkeypatch.setattr(redis, "Redis", Recording)
    try:
        with pytest.raises(rd.RedisError) as caught:
            rd.connect({"host": "127.0.0.1", "port": silent.getsockname()[1], "connect_timeout": 0.2})
    finally:
        silent.close()
    assert caught.value.kind == "timeout" and "connect_timeout" in str(caught.value)
    assert pinged_with == [0.2]
