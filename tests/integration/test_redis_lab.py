"""The lab's Redis: started beside PostgreSQL, reported by status (text and --json), stopped by PID, restarted."""

from __future__ import annotations

import json
import os
import stat

from conftest import redis_client, wait_redis_replicated

from erlmcp_dr.lab import lifecycle as lab


def test_status_shows_each_redis_node_role_offset_link_and_keys(fresh_lab, monkeypatch, capsys):
    from erlmcp_dr import cli

    with redis_client(fresh_lab, "redis-a") as client:
        client.mset({"a": "1", "b": "2"})
    wait_redis_replicated(fresh_lab)
    monkeypatch.setenv(lab.LAB_DIR_ENV, str(fresh_lab.root))
    monkeypatch.setenv(lab.PORT_BASE_ENV, str(fresh_lab.port_base))
    assert cli.main(["lab", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in status["redis"]}
    assert status["redis_primary"] == "redis-a"
    assert [rows[n]["port"] for n in ("redis-a", "redis-b", "redis-c")] == [fresh_lab.port_base + i for i in (3, 4, 5)]
    assert rows["redis-a"]["role"] == "primary" and rows["redis-a"]["link"] == "2 replica(s) online"
    for name in ("redis-b", "redis-c"):
        row = rows[name]
        assert (row["role"], row["link"], row["keys"], row["lag_bytes"]) == ("replica", "up", 2, 0)
        assert row["upstream"] == f"127.0.0.1:{fresh_lab.port_base + 3}" and row["offset"] == rows["redis-a"]["offset"]
    assert all(row["aof"] and row["state"] == "running" for row in rows.values())
    assert cli.main(["lab", "status"]) == 0
    text = capsys.readouterr().out
    assert "redis-b" in text and "up from 127.0.0.1:" in text


def test_redis_runs_as_the_lab_user_with_aof_and_a_private_config(fresh_lab):
    node = fresh_lab.redis_node("redis-a")
    pid = lab._lab_redis_pid(node)
    assert pid is not None
    assert os.stat(f"/proc/{pid}").st_uid == lab.lab_os_user().pw_uid
    assert stat.S_IMODE(node.conf_file.stat().st_mode) == 0o600
    with redis_client(fresh_lab, "redis-a") as client:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appenddirname") == {"appenddirname": "appendonlydir"}
        assert client.config_get("save")["save"] != ""
    assert (node.data_dir / "appendonlydir").is_dir()


def test_down_stops_redis_by_pid_and_up_starts_it_again_with_its_data(fresh_lab):
    with redis_client(fresh_lab, "redis-a") as client:
        client.set("survives", "yes")
    pids = {node.name: lab._lab_redis_pid(node) for node in fresh_lab.redis_nodes}
    stopped = lab.down(fresh_lab)
    assert stopped["redis_stopped"] == ["redis-a", "redis-b", "redis-c"]
    assert all(lab._lab_redis_pid(node) is None for node in fresh_lab.redis_nodes)
    assert "Redis stopped redis-a, redis-b, redis-c" in lab.format_status(stopped)
    assert not lab.status(fresh_lab)["ok"]
    result = lab.up(fresh_lab)
    assert result["ok"], result
    assert all(lab._lab_redis_pid(node) not in (None, pids[node.name]) for node in fresh_lab.redis_nodes)
    with redis_client(fresh_lab, "redis-a") as client:
        assert client.get("survives") == "yes"
    lab.wait_redis_linked(fresh_lab)
