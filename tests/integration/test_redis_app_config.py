"""app_redis_config through Ansible: written atomically, the replaced version kept as .previous, check mode and
diff, a second run that changes nothing."""

from __future__ import annotations

import json
from typing import Any

from conftest import run_module


def _info(primary: str, replicas: list[str]) -> dict[str, Any]:
    ports = {"r1": 7001, "r2": 7002, "r3": 7003}
    nodes = {name: dict(name=name, host="127.0.0.1", port=port, reachable=True,
                        role="primary" if name == primary else "replica",
                        upstream=primary if name in replicas else None, link_status="up")
             for name, port in ports.items()}
    return dict(nodes=nodes, primary=primary, primaries=[primary])


def test_app_redis_config_writes_keeps_previous_and_converges(tmp_path):
    path = tmp_path / "redis.json"
    first = run_module("erlmcp.dr.app_redis_config", dict(path=str(path), info=_info("r1", ["r2", "r3"])))
    assert not first["failed"] and first["changed"] and first["previous"] is None, first
    assert json.loads(path.read_text())["redis"]["primary"] == "127.0.0.1:7001"
    same = run_module("erlmcp.dr.app_redis_config", dict(path=str(path), info=_info("r1", ["r2", "r3"])))
    assert not same["changed"]

    planned = run_module("erlmcp.dr.app_redis_config", dict(path=str(path), info=_info("r2", ["r1"])),
                         check=True, diff=True)
    assert planned["changed"] and '"primary_node": "r2"' in planned["diff"]["after"]
    assert json.loads(path.read_text())["redis"]["primary_node"] == "r1"  # check mode wrote nothing

    moved = run_module("erlmcp.dr.app_redis_config", dict(path=str(path), info=_info("r2", ["r1"])))
    assert moved["changed"] and moved["config"]["redis"] == {"primary": "127.0.0.1:7002",
                                                             "replicas": ["127.0.0.1:7001"],
                                                             "primary_node": "r2", "replica_nodes": ["r1"]}
    assert json.loads((tmp_path / "redis.json.previous").read_text())["redis"]["primary_node"] == "r1"
    missing = run_module("erlmcp.dr.app_redis_config", dict(path=str(tmp_path / "no" / "redis.json"),
                                                            info=_info("r1", [])))
    assert missing["failed"] and "does not exist" in missing["msg"]
