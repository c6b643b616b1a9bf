"""The dns_cutover runbook's decisions (module_utils/_dns/plan.py): pure, no servers."""

from __future__ import annotations

from typing import Any

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import plan  # noqa: E402

REGIONS = {"a": "127.0.1.1", "b": "127.0.1.2"}


def info(name: str, *answers: list[str] | None, ttl: int = 30) -> dict[str, Any]:
    rows = [{"name": f"ns{i}", "values": a, "error": None if a is not None else "no answer"}
            for i, a in enumerate(answers)]
    agree = all(a is not None for a in answers) and len({tuple(a or []) for a in answers}) == 1
    return {"name": name, "servers": rows, "agree": agree, "agreed_values": answers[0] if agree else None,
            "ttl": ttl, "disagreement": None if agree else "they differ"}


def dr(**kw: Any) -> dict[str, Any]:
    return {"records": None, "region": None, "values": None, "rollback_of": None, "expected_values": None,
            "force": False, "type": "A", **kw}


def plan_for(before: list[dict[str, Any]], rollback: dict[str, Any] | None = None, rto_left: float | None = None,
             **kw: Any) -> dict[str, Any]:
    params = dr(**kw)
    return plan.cutover_plan(before, params, plan.check_params(params, ["api"], REGIONS), rollback, rto_left)


def test_region_target_guarded_by_what_the_servers_agree_on() -> None:
    got = plan_for([info("api.z.", ["127.0.1.1"], ["127.0.1.1"])], region="b")
    assert got["action"] == "change"
    assert got["records"] == [{"name": "api.z.", "current": ["127.0.1.1"], "target": ["127.0.1.2"],
                               "expected": ["127.0.1.1"], "ttl": 30, "change": True}]


def test_already_there_is_nothing_to_do() -> None:
    got = plan_for([info("api.z.", ["127.0.1.2"], ["127.0.1.2"])], region="b")
    assert got["action"] == "none"


@pytest.mark.parametrize(("params", "reason"), [
    ({}, "give exactly one of region, values or rollback_of (got none)"),
    ({"region": "b", "values": "1.2.3.4"}, "give exactly one of region, values or rollback_of (got region, values)"),
    ({"region": "x"}, "region 'x' is not in the inventory's dns_region_addresses (regions: a, b)"),
    ({"values": "300.1.1.1"}, "values: '300.1.1.1' is not an IPv4 address"),
    ({"values": "10.0.0.1", "expected_values": "nope"}, "expected_values: 'nope' is not an IPv4 address"),
    ({"values": "x.", "type": "CNAME", "records": "api,{{ x }}"},
     "records: '{{ x }}' is not a DNS name"),
    ({"rollback_of": "../../etc"}, "rollback_of is '../../etc', not a run id (letters, digits and ._:@+- only)"),
])
def test_bad_parameters_are_refused_before_any_server_is_asked(params: dict[str, Any], reason: str) -> None:
    checked = plan.check_params(dr(**params), ["api"], REGIONS)
    assert checked["problems"] == [reason]
    got = plan.cutover_plan([], dr(**params), checked)
    assert got["action"] == "refuse" and got["reason"] == reason


def test_comma_separated_parameters_and_the_inventorys_records() -> None:
    checked = plan.check_params(dr(values="10.0.0.2, 10.0.0.1", expected_values="10.0.0.9"), ["api", "health"],
                                REGIONS)
    assert checked == {"records": ["api", "health"], "target": ["10.0.0.1", "10.0.0.2"], "expected": ["10.0.0.9"],
                       "problems": []}
    assert plan.check_params(dr(region="a", records="www"), ["api"], REGIONS)["records"] == ["www"]


def test_disagreement_refuses_unless_forced_then_guards_on_the_first_answer() -> None:
    before = [info("api.z.", ["127.0.1.1"], None)]
    assert "the authoritative servers disagree" in plan_for(before, region="b")["reason"]
    forced = plan_for(before, region="b", force=True)
    assert forced["action"] == "change" and forced["records"][0]["expected"] == ["127.0.1.1"]
    assert forced["warnings"][0].startswith("forced past a disagreement")


def test_ttl_over_the_rto_budget_left_is_a_warning() -> None:
    got = plan_for([info("api.z.", ["127.0.1.1"], ["127.0.1.1"], ttl=300)], region="b", rto_left=100)
    assert got["warnings"] == ["api.z. has TTL 300s, more than the 100s left of the RTO budget: resolvers may keep "
                               "the old answer after it"]


def test_rollback_puts_back_what_a_run_replaced_guarded_by_what_it_set() -> None:
    earlier = {"facts": {"summary": {"records": [
        {"name": "api.z.", "applied": True, "previous": {"values": ["127.0.1.1"], "ttl": 30},
         "new": {"values": ["127.0.1.2"]}},
        {"name": "health.z.", "applied": False, "previous": {"values": ["127.0.1.1"], "ttl": 30},
         "new": {"values": ["127.0.1.2"]}}]}}}
    before = [info("api.z.", ["127.0.1.2"], ["127.0.1.2"]), info("health.z.", ["127.0.1.1"], ["127.0.1.1"])]
    got = plan_for(before, rollback=earlier, rollback_of="run-1")
    assert [r["name"] for r in got["records"]] == ["api.z."]
    assert got["records"][0]["target"] == ["127.0.1.1"] and got["records"][0]["expected"] == ["127.0.1.2"]
    nothing = plan_for(before, rollback={"facts": {"summary": {}}}, rollback_of="run-2")
    assert nothing["action"] == "refuse" and "changed no record" in nothing["reason"]


def test_rollback_path_refuses_what_is_not_a_run_id() -> None:
    assert plan.rollback_path("/h/runs/this-run", "20261125T1-dns") == "/h/runs/20261125T1-dns/result.json"
    for bad in ("../etc", "a/b", "", ".."):
        with pytest.raises(ValueError):
            plan.rollback_path("/h/runs/this-run", bad)


def test_summary_says_the_primary_already_changed_and_gives_the_rollback() -> None:
    cutover = plan_for([info("api.z.", ["127.0.1.1"], ["127.0.1.1"])], region="b")
    change = {"results": [{"name": "api.z.", "applied": True, "verified": False, "previous": {
        "values": ["127.0.1.1"], "ttl": 30}, "verification": {"servers": [], "stale_servers": ["ns1"]},
        "msg": "The change WAS applied"}]}
    got = plan.summary(cutover, change, {}, run_id="run-9")
    assert got["details"]["primary_already_changed"] and got["served"] == {
        "before": {"api.z.": ["127.0.1.1"]}, "after": {"api.z.": ["127.0.1.2"]}}
    assert got["did"] == ["api.z. changed from ['127.0.1.1'] to ['127.0.1.2'] at the primary, NOT verified "
                          "everywhere (ns1)"]
    assert got["rollback"] == ["runbook run dns_cutover -e rollback_of=run-9",
                               "runbook run dns_cutover -e records=api.z. -e values=127.0.1.1 "
                               "-e expected_values=127.0.1.2"]


def test_lock_key_and_servers_from_the_inventory() -> None:
    assert plan.lock_key("Erlmcp.Lab") == "dns:erlmcp.lab."
    hostvars = {"s2": {"dns_host": "10.0.0.2", "dns_port": 5353}, "p1": {"dns_host": "10.0.0.1", "dns_role": "primary"}}
    assert plan.dns_servers(["s2", "p1"], hostvars) == [
        {"name": "p1", "host": "10.0.0.1", "port": 53, "role": "primary"},
        {"name": "s2", "host": "10.0.0.2", "port": 5353, "role": "secondary"}]
