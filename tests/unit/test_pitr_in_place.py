"""pg_restore_in_place's decisions that need no server (module_utils/_pitr/in_place.py, plan.py): what a run does
from the node it finds and the marker a former run left (restore, finish a cut-off one, found done, or refuse),
the targets it refuses, the end state it checks (every member on the new timeline) and what its plan shows before
the confirmation (what changes, what is lost, the point of no return)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import in_place, plan  # noqa: E402

DATA = "/var/lib/postgresql/15/main"
TARGET = in_place.parse_target("time", "2026-12-06T11:40:00+00:00")


def _node(running: bool = True, role: str | None = "primary", timeline: int | None = 3) -> dict[str, Any]:
    return {"running": running, "role": role if running else None, "timeline": timeline,
            "current_lsn": "0/9000000" if running and role == "primary" else None, "read_only": False}


def _marker(state: str, target: dict[str, Any] = TARGET, **extra: Any) -> dict[str, Any]:
    return {"state": state, "label": "20261206-110000F", "target": target, "from_timeline": 3, **extra}


def test_a_running_primary_is_restored_along_its_own_timeline() -> None:
    assert in_place.decide(None, _node(timeline=3), TARGET, None, DATA) == ("restore", 3)


@pytest.mark.parametrize("node, found", [(_node(running=False), "stopped"), (_node(role="standby"), "a standby")])
def test_a_node_that_is_not_the_running_primary_is_refused_naming_the_parameter(node: dict[str, Any],
                                                                                found: str) -> None:
    with pytest.raises(ModuleFailure) as refused:
        in_place.decide(None, node, TARGET, None, DATA)
    assert found in str(refused.value) and "(node)" in str(refused.value)
    assert refused.value.kind == "refused_target"


def test_a_cut_off_run_is_redone_along_the_timeline_it_recorded_whatever_the_node_shows_now() -> None:
    # killed after the stop (the node stopped, its control file may already say the backup's timeline) or before it
    for node in (_node(running=False, timeline=1), _node(timeline=3), _node(role="standby", timeline=3)):
        assert in_place.decide(_marker("restoring"), node, TARGET, None, DATA) == ("restore", 3)


def test_a_cut_off_run_whose_node_promoted_already_is_only_finished() -> None:
    assert in_place.decide(_marker("restoring"), _node(timeline=4), TARGET, None, DATA) == ("finish", 3)


def test_another_target_is_refused_while_a_restore_is_unfinished_naming_the_one_to_finish() -> None:
    other = in_place.parse_target("lsn", "0/5000000")
    with pytest.raises(ModuleFailure) as refused:
        in_place.decide(_marker("restoring"), _node(running=False), other, None, DATA)
    message = str(refused.value)
    assert "was cut off" in message and TARGET["value"] in message and "target_type time" in message


def test_a_promoted_restore_is_found_done_only_while_the_node_stays_on_its_timeline() -> None:
    done = _marker("promoted", new_timeline=4)
    assert in_place.decide(done, _node(timeline=4), TARGET, None, DATA) == ("done", 3)
    # the same target asked again once the cluster moved on (a failover since: timeline 5) is a new restore
    assert in_place.decide(done, _node(timeline=5), TARGET, None, DATA) == ("restore", 5)
    other = in_place.parse_target("name", "before-migration")
    assert in_place.decide(done, _node(timeline=4), other, None, DATA) == ("restore", 4)


def test_latest_is_refused_in_place() -> None:
    with pytest.raises(ModuleFailure) as refused:
        in_place.parse_target("latest", None)
    assert "(target_type)" in str(refused.value)


def test_a_target_the_primary_has_not_reached_is_refused() -> None:
    with pytest.raises(ModuleFailure, match="ahead of the primary's WAL"):
        in_place._check_target_behind(in_place.parse_target("lsn", "0/A000000"), _node())
    future = in_place.parse_target("time", time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 3600)))
    with pytest.raises(ModuleFailure, match="in the future"):
        in_place._check_target_behind(future, _node())
    in_place._check_target_behind(in_place.parse_target("lsn", "0/8000000"), _node())


def _cluster(**timelines: int) -> dict[str, Any]:
    return {"nodes": {name: {"reachable": True, "timeline": tli, "role": "primary" if name == "pg-a" else "standby"}
                      for name, tli in timelines.items()}}


def test_the_end_state_holds_only_with_every_member_on_the_new_timeline() -> None:
    rejoined = {"ok": True, "problems": [], "primary": "pg-a"}
    assert plan.in_place_end_state(rejoined, _cluster(**{"pg-a": 4, "pg-b": 4}), 4)["ok"] is True
    behind = plan.in_place_end_state(rejoined, _cluster(**{"pg-a": 4, "pg-b": 3}), 4)
    assert behind["ok"] is False and behind["problems"] == [
        "pg-b is on timeline 3, expected the restore's new timeline 4"]
    assert plan.in_place_end_state({}, _cluster(**{"pg-a": 3}), None) == {}


META = {"point_of_no_return": "erlmcp.dr.pg_restore_in_place"}


def test_the_plan_shows_what_changes_and_what_is_lost_and_passes_no_point_of_no_return() -> None:
    planned = {"action": "restore", "changed": True, "target": TARGET, "data_dir": DATA, "from_timeline": 3,
               "backup": {"label": "20261206-110000F"}}
    found = plan.summary("pg_restore_in_place", {"in_place": planned}, check_mode=True, meta=META)
    assert found["action"] == "restore_in_place" and found["point_of_no_return_passed"] is False
    assert "restore backup 20261206-110000F" in found["plan"]["will_change"][0]
    assert "after time 2026-12-06 11:40:00+00:00 on timeline 3" in found["plan"]["may_lose"][0]


def test_a_run_that_stopped_the_primary_passed_the_point_of_no_return_even_when_it_failed_after() -> None:
    failed = {"action": "restore", "changed": True, "target": TARGET,
              "archived_before_stop": "000000030000000000000009"}
    assert plan.summary("pg_restore_in_place", {"in_place": failed}, meta=META)["point_of_no_return_passed"] is True
    refused = {"action": "restore", "changed": False, "target": TARGET}
    assert plan.summary("pg_restore_in_place", {"in_place": refused}, meta=META)["point_of_no_return_passed"] is False


def test_a_plan_refused_before_it_read_a_target_still_publishes_its_summary() -> None:
    """A check-mode run refused at once (no backup in the repository) left the runbook without a summary: the
    summary's plan read the missing target (found by the envelope test over every runbook)."""
    refused = {"failed": True, "msg": "no backup in stanza main", "error_kind": "no_backup", "changed": False}
    found = plan.summary("pg_restore_in_place", {"in_place": refused}, check_mode=True, meta=META)
    assert found["check_mode"] is True and found["point_of_no_return_passed"] is False
    assert plan.describe_target({}) == "no target (none was read)"
