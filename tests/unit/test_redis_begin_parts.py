"""The parts of the Redis runbooks' one-task start (erlmcp.dr.redis_begin) that need no server: the one Redis
contract and what each runbook requires beside it, the store refusal made in the plan, the backup's end state, and a
busy start seen by the runner as a run turned away (exit 3). The start itself runs on the lab in
tests/integration/test_redis_runbooks.py and test_redis_begin_start.py."""

from __future__ import annotations

from erlmcp_dr import runner, timeline
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.action import redis_begin  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common import contract as _contract  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import plan  # noqa: E402

ACT = {"action": "act", "target": "redis-a", "reason": "the one primary"}


def _required(spec: dict) -> set[str]:
    return {name for name, option in spec.items() if option.get("required")}


def test_the_three_runbooks_share_one_contract_and_each_requires_only_what_it_uses() -> None:
    contracts = {name: redis_begin.contract(name) for name in ("backup", "restore", "failover")}
    for found in contracts.values():
        assert _contract.contract_problems(found["groups"], found["vars"]) == []
        assert set(found["groups"]["redis"]["host_vars"]) == set(redis_begin.HOST_VARS)
        assert set(found["vars"]) == set(redis_begin.CONTROLLER_VARS)
    base = {"redis_host", "redis_port", "redis_data_dir"}
    assert _required(contracts["backup"]["groups"]["redis"]["host_vars"]) == base
    assert _required(contracts["restore"]["groups"]["redis"]["host_vars"]) == base | {"redis_start_command"}
    assert _required(contracts["failover"]["vars"]) == {"dr_app_redis_config_path"}
    assert _required(contracts["backup"]["vars"]) == _required(contracts["restore"]["vars"]) == set()
    assert redis_begin.HOST_VARS["redis_start_command"].get("required") is None  # the shared table is not changed


def test_a_store_the_inventory_does_not_name_is_a_refusal_naming_the_variable() -> None:
    hostvars = {"redis-a": {"redis_backup_dir": "/srv/backups"}, "redis-b": {}}
    assert redis_begin.store_refusal(ACT, {"store": "directory"}, hostvars, {}) == ACT
    refused = redis_begin.store_refusal(dict(ACT, target="redis-b"), {"store": "directory"}, hostvars, {})
    assert refused["action"] == "refuse" and "redis_backup_dir on redis-b" in refused["reason"]
    refused = redis_begin.store_refusal(ACT, {"store": "s3"}, hostvars, {"redis_s3_bucket": None})
    assert refused["action"] == "refuse" and "store=s3 needs redis_s3_bucket" in refused["reason"]
    assert redis_begin.store_refusal(ACT, {"store": "s3"}, {}, {"redis_s3_bucket": "b"}) == ACT
    earlier = {"action": "refuse", "target": None, "reason": "no Redis primary answers"}
    assert redis_begin.store_refusal(earlier, {"store": "s3"}, {}, {}) == earlier  # the first reason stays


def test_the_backup_is_done_only_when_its_read_back_finds_it_verified_and_unchanged() -> None:
    backup = {"backup_id": "b1", "sha256": "ab", "path": "/srv/backups/b1.rdb"}
    assert plan.backup_end_state({"changed": False, "verified": True}, backup) == {"ok": True, "problems": []}
    again = plan.backup_end_state({"changed": True, "verified": True}, backup)
    assert not again["ok"] and "b1 verified with sha256 ab" in again["problems"][0]
    assert not plan.backup_end_state({"changed": False, "verified": False}, backup)["ok"]
    failed = plan.backup_end_state({"failed": True, "msg": "no such file"}, backup)
    assert failed == {"ok": False, "problems": ["the store could not be read back: no such file"]}


def test_a_busy_redis_start_is_a_run_turned_away() -> None:
    holder = {"run_id": "r-1", "host": "h", "since": "now"}
    busy = timeline.make_step("failed", {"task": "Start", "host": "localhost",
                                         "resolved_action": "erlmcp.dr.redis_begin",
                                         "res": {"failed": True, "busy": True, "holder": holder, "msg": "held"}})
    assert runner.busy_holder([busy]) == holder
