"""The dns_cutover runbook's decisions (module_utils/_dns_plan.py): pure, no servers."""

from __future__ import annotations

from typing import Any

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils import _dns_plan as plan  # noqa: E402

REGIONS = {"a": "127.0.1.1", "b": "127.0.1.2"}


def info(name: str, *answers: list[str] | None, ttl: int = 30) -> dict[str, Any]:
    rows = [{"name": f"ns{i}", "values": a, "error": None if a is not None else "no answer"}
            for i, a in enumerate(answers)]
    agree = all(a is not None for a in answers) and len({tuple(a or []) for a in answers}) == 1
    return {"name": name, "servers": rows, "agree": agree, "agreed_values": answers[0] if agree else None,
            "ttl": ttl, "disagreement": None if agree else "they differ"}


def dr(**kw: Any) -> dict[str, Any]:
    return {"records": [], "region": None, "values": None, "rollback_of": None, "expected_values": None,
            "force": False, **kw}


def test_region_target_guarded_by_what_the_servers_agree_on() -> None:
    got = plan.cutover_plan([info("api.z.", ["127.0.1.1"], ["127.0.1.1"])], dr(region="b"), REGIONS)
    assert got["action"] == "change"
    assert got["records"] == [{"name": "api.z.", "current": ["127.0.1.1"], "target": ["127.0.1.2"],
                               "expected": ["127.0.1.1"], "ttl": 30, "change": True}]


def test_already_there_is_nothing_to_do() -> None:
    got = plan.cutover_plan([info("api.z.", ["127.0.1.2"], ["127.0.1.2"])], dr(region="b"), REGIONS)
    assert got["action"] == "none"


@pytest.mark.parametrize(("params", "reason"), [
    (dr(), "give exactly one of region, values or rollback_of (got none)"),
    (dr(region="b", values=["1.2.3.4"]), "give exactly one of region, values or rollback_of (got region, values)"),
    (dr(region="x"), "region 'x' is not in the inventory's dns_region_addresses (regions: a, b)"),
])
def test_refusals_name_the_parameter(params: dict[str, Any], reason: str) -> None:
    got = plan.cutover_plan([info("api.z.", ["127.0.1.1"], ["127.0.1.1"])], params, REGIONS)
    assert got["action"] == "refuse" and got["reason"] == reason


def test_disagreement_refuses_unless_forced_then_guards_on_the_first_answer() -> None:
    before = [info("api.z.", ["127.0.1.1"], None)]
    assert "the authoritative servers disagree" in plan.cutover_plan(before, dr(region="b"), REGIONS)["reason"]
    forced = plan.cutover_plan(before, dr(region="b", force=True), REGIONS)
    assert forced["action"] == "change" and forced["records"][0]["expected"] == ["127.0.1.1"]
    assert forced["warnings"][0].startswith("forced past a disagreement")


def test_ttl_over_the_rto_budget_left_is_a_warning() -> None:
    got = plan.cutover_plan([info("api.z.", ["127.0.1.1"], ["127.0.1.1"], ttl=300)], dr(region="b"), REGIONS,
                            rto_left=100)
    assert got["warnings"] == ["api.z. has TTL 300s, more than the 100s left of the RTO budget: resolvers may keep "
                               "the old answer after it"]


def test_rollback_puts_back_what_a_run_replaced_guarded_by_what_it_set() -> None:
    earlier = {"facts": {"summary": {"records": [
        {"name": "api.z.", "applied": True, "previous": {"values": ["127.0.1.1"], "ttl": 30},
         "new": {"values": ["127.0.1.2"]}},
        {"name": "health.z.", "applied": False, "previous": {"values": ["127.0.1.1"], "ttl": 30},
         "new": {"values": ["127.0.1.2"]}}]}}}
    before = [info("api.z.", ["127.0.1.2"], ["127.0.1.2"]), info("health.z.", ["127.0.1.1"], ["127.0.1.1"])]
    got = plan.cutover_plan(before, dr(rollback_of="run-1"), REGIONS, rollback=earlier)
    assert [r["name"] for r in got["records"]] == ["api.z."]
    assert got["records"][0]["target"] == ["127.0.1.1"] and got["records"][0]["expected"] == ["127.0.1.2"]
    nothing = plan.cutover_plan(before, dr(rollback_of="run-2"), REGIONS, rollback={"facts": {"summary": {}}})
    assert nothing["action"] == "refuse" and "changed no record" in nothing["reason"]


def test_rollback_path_refuses_what_is_not_a_run_id() -> None:
    assert plan.rollback_path("/h/runs/this-run", "20261125T1-dns") == "/h/runs/20261125T1-dns/result.json"
    for bad in ("../etc", "a/b", "", ".."):
        with pytest.raises(ValueError):
            plan.rollback_path("/h/runs/this-run", bad)


def test_summary_says_the_primary_already_changed_and_gives_the_rollback() -> None:
    cutover = plan.cutover_plan([info("api.z.", ["127.0.1.1"], ["127.0.1.1"])], dr(region="b"), REGIONS)
    change = {"results": [{"name": "api.z.", "applied": True, "verified": False, "previous": {
        "values": ["127.0.1.1"], "ttl": 30}, "verification": {"servers": [], "stale_servers": ["ns1"]},
        "msg": "The change WAS applied"}]}
    got = plan.summary(cutover, change, {}, run_id="run-9")
    assert got["primary_already_changed"]
    assert got["did"] == ["api.z. changed from ['127.0.1.1'] to ['127.0.1.2'] at the primary, NOT verified "
                          "everywhere (ns1)"]
    assert got["rollback"] == ["runbook run dns_cutover -e rollback_of=run-9",
                               "runbook run dns_cutover -e records=[api.z.] -e values=[127.0.1.1] "
                               "-e expected_values=[127.0.1.2]"]


def test_lock_key_and_servers_from_the_inventory() -> None:
    assert plan.lock_key("Erlmcp.Lab") == "dns:erlmcp.lab."
    hostvars = {"s2": {"dns_host": "10.0.0.2", "dns_port": 5353}, "p1": {"dns_host": "10.0.0.1", "dns_role": "primary"}}
    assert plan.dns_servers(["s2", "p1"], hostvars) == [
        {"name": "p1", "host": "10.0.0.1", "port": 53, "role": "primary"},
        {"name": "s2", "host": "10.0.0.2", "port": 5353, "role": "secondary"}]
