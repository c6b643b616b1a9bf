"""The shared one-task start (plugins/plugin_utils/begin.py) with a system made up for the test: the order of the
steps, a busy lock that sets no fact and releases nothing, and every failure after the lock releasing it first.

The composed action plugins (runbook_params, inventory_contract, run_lock) are replaced by canned answers recorded in
order; the real ones run in tests/integration/test_pg_begin.py, test_dns_cutover.py and test_dns_begin_start.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.plugin_utils.begin import BeginAction, BeginRefusal  # noqa: E402

LOCK = {"key": "made-up:target", "held": True, "acquired": True, "busy": False, "run_id": "r1", "store_dir": "/l"}
BUSY = {"failed": True, "msg": "held by run r0", "busy": True, "holder": {"run_id": "r0"}}


class MadeUp(BeginAction):
    """A system whose parts say what they were given; `script` decides each step's answer."""

    def __init__(self, script: dict[str, Any], key_needs_read: bool = True) -> None:  # no ActionBase set-up
        self.KEY_NEEDS_READ = key_needs_read
        self.script = script
        self.calls: list[str] = []
        self._task = SimpleNamespace(args={"runbook": "made_up", "contract": {"groups": {}}}, async_val=0,
                                     check_mode=False, action="made_up_begin")
        self._connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir="/tmp"))
        self._supports_async = False
        self._supports_check_mode = True

    def sub_action(self, name: str, args: dict[str, Any], task_vars: dict[str, Any], check_mode: Any = None):
        step = name.rsplit(".", 1)[-1]
        if step == "run_lock":
            step = "lock" if args["state"] == "present" else "release"
        self.calls.append(step)
        answers = {"runbook_params": {"ansible_facts": {"dr": {"target": "t"}}, "parameters": {"target": "t"}},
                   "inventory_contract": {"ok": True, "hosts": {}}, "lock": LOCK, "release": {"released": True}}
        return dict(self.script.get(step, answers[step]))

    def prepare(self, start):
        self.calls.append("prepare")
        if self.script.get("prepare"):
            raise BeginRefusal(self.script["prepare"], problems=[self.script["prepare"]])
        return {"prepared": True}

    def read(self, start):
        self.calls.append("read")
        reads = [c for c in self.calls if c == "read"]
        return dict(self.script.get(f"read{len(reads)}", {"identity": "id-1"}))

    def lock_key(self, start):
        return "made-up:" + (start.first or {}).get("identity", "target")

    def plan_name(self, start):
        return "made-up"

    def plan(self, start):
        self.calls.append("plan")
        if self.script.get("plan"):
            raise KeyError(self.script["plan"])
        return {"action": "change", "from": start.read}

    def facts(self, start):
        return {"made_up_lock": start.lock, "dr_plan": start.plan}


def test_the_steps_run_in_order_and_the_facts_come_from_the_read_under_the_lock() -> None:
    action = MadeUp({"read2": {"identity": "id-1", "under_lock": True}})
    result = action.run(task_vars={})
    assert action.calls == ["runbook_params", "inventory_contract", "prepare", "read", "lock", "read", "plan"]
    assert not result.get("failed") and result["ansible_facts"]["dr"] == {"target": "t"}
    assert result["ansible_facts"]["dr_plan"]["from"] == {"identity": "id-1", "under_lock": True}
    assert result["ansible_facts"]["made_up_lock"] == LOCK and result["lock"] == LOCK
    assert set(result["durations"]) == {"parameters", "inventory", "assess", "lock", "reassess", "plan"}


def test_a_key_the_inventory_names_is_locked_before_the_one_read() -> None:
    action = MadeUp({}, key_needs_read=False)
    result = action.run(task_vars={})
    assert action.calls == ["runbook_params", "inventory_contract", "prepare", "lock", "read", "plan"]
    assert not result.get("failed")


def test_a_busy_lock_fails_with_its_holder_sets_no_fact_and_releases_nothing() -> None:
    action = MadeUp({"lock": BUSY})
    result = action.run(task_vars={})
    assert result["failed"] and result["busy"] is True and result["holder"] == {"run_id": "r0"}
    assert result["msg"] == "held by run r0" and "ansible_facts" not in result
    assert action.calls[-1] == "lock" and "release" not in action.calls


@pytest.mark.parametrize("script, message", [
    ({"read2": {"failed": True, "msg": "node down"}}, "node down"),
    ({"plan": "candidate"}, "the made-up plan could not be made from the read: 'candidate'"),
], ids=["read-under-the-lock", "plan"])
def test_a_failure_after_the_lock_releases_it_before_the_task_fails(script: dict[str, Any], message: str) -> None:
    action = MadeUp(script)
    result = action.run(task_vars={})
    assert result["failed"] and result["msg"] == message and "ansible_facts" not in result
    assert action.calls[-1] == "release" and result["lock_released"] is True and result["lock"] == LOCK


def test_a_refusal_before_any_read_takes_no_lock() -> None:
    action = MadeUp({"prepare": "records: 'x y' is not a DNS name"})
    result = action.run(task_vars={})
    assert result["failed"] and result["msg"] == "records: 'x y' is not a DNS name"
    assert result["problems"] == ["records: 'x y' is not a DNS name"]
    assert action.calls == ["runbook_params", "inventory_contract", "prepare"]


def test_bad_parameters_stop_before_the_inventory_is_read() -> None:
    action = MadeUp({"runbook_params": {"failed": True, "msg": "invalid runbook parameters (nothing was run): x"}})
    result = action.run(task_vars={})
    assert result["failed"] and action.calls == ["runbook_params"]
