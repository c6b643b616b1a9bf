"""What dns_cutover guards on, decided before any change (module_utils/_dns/plan.py, _dns/rollback.py) and how the
confirmed plan's guard reaches the run (cli.confirmed_guard): pure, no servers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from erlmcp_dr import catalog, cli
from erlmcp_dr.paths import ensure_collection_importable
from erlmcp_dr.result import RunResult

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import plan, rollback  # noqa: E402

REGIONS = {"a": "127.0.1.1", "b": "127.0.1.2"}


def info(name: str, values: list[str], ttl: int = 30) -> dict[str, Any]:
    rows = [{"name": "ns0", "values": values, "error": None}]
    return {"name": name, "servers": rows, "agree": True, "agreed_values": values, "ttl": ttl, "disagreement": None}


def dr(**kw: Any) -> dict[str, Any]:
    return {"records": None, "region": None, "values": None, "rollback_of": None, "expected_values": None,
            "force": False, "type": "A", **kw}


def plan_for(before: list[dict[str, Any]], recorded: dict[str, list[str]] | None = None, **kw: Any) -> dict[str, Any]:
    params = dr(**kw)
    return plan.cutover_plan(before, params, plan.check_params(params, ["api"], REGIONS), None, None, REGIONS,
                             recorded or {})


def test_a_record_changed_since_the_confirmed_plan_is_refused_even_forced() -> None:
    got = plan_for([info("api.z.", ["127.0.1.2"])], region="a", force=True,
                   confirmed_values={"api.z.": ["127.0.1.1"]})
    assert got["action"] == "refuse"
    assert got["reason"].startswith("changed since the plan was confirmed: api.z. held ['127.0.1.1'] when the plan "
                                    "was confirmed and holds ['127.0.1.2'] now")


def test_the_confirmed_values_are_the_guard() -> None:
    got = plan_for([info("api.z.", ["127.0.1.9"])], region="b", confirmed_values={"API.Z.": "127.0.1.9"})
    assert got["action"] == "change" and got["records"][0]["expected"] == ["127.0.1.9"]


def test_a_value_no_region_has_is_refused_naming_it_and_the_override() -> None:
    got = plan_for([info("api.z.", ["127.0.1.9"])], region="b")
    assert got["action"] == "refuse"
    assert got["reason"].startswith("api.z. holds 127.0.1.9: none of the inventory's region addresses (a: 127.0.1.1, "
                                    "b: 127.0.1.2) nor what the last recorded cutover set")
    assert got["reason"].endswith("(expected_values=127.0.1.9)")
    assert plan_for([info("api.z.", ["127.0.1.9"])], region="b", expected_values="127.0.1.9")["action"] == "change"
    assert plan_for([info("api.z.", ["127.0.1.9"])], {"api.z.": ["127.0.1.9"]}, region="b")["action"] == "change"
    assert plan_for([info("api.z.", [])], region="b")["action"] == "change"  # no record: nobody's value to lose


def test_the_apex_and_too_many_records_are_refused_naming_the_parameter() -> None:
    apex = plan.check_params(dr(region="a", records="@"), [], REGIONS)["problems"]
    assert len(apex) == 1 and apex[0].startswith("records: '@' is the zone apex") and "allow_apex=true" in apex[0]
    assert plan.check_params(dr(region="a", records="@", allow_apex=True), [], REGIONS)["problems"] == []
    names = ",".join(f"n{i}" for i in range(101))
    assert plan.check_params(dr(region="a", records=names), [], REGIONS)["problems"] == [
        "records: 101 names, more than max_records (100): every name is read at every server while the zone stays "
        "locked. Split the cutover into smaller runs, or raise max_records"]
    assert plan.check_params(dr(region="a", records=names, max_records=200), [], REGIONS)["problems"] == []


def test_confirmed_values_that_are_not_values_are_refused() -> None:
    problems = plan.check_params(dr(region="a", confirmed_values={"api.z.": ["x"]}), ["api"], REGIONS)["problems"]
    assert problems == ["confirmed_values[api.z.]: 'x' is not an IPv4 address"]


def test_the_plan_names_each_record_old_to_new_and_publishes_its_guard() -> None:
    cutover = plan_for([info("api.z.", ["127.0.1.1"])], region="b")
    got = plan.summary(cutover, {}, {}, check_mode=True)
    assert got["plan"]["will_change"][0] == "api.z. A TTL 30s: 127.0.1.1 -> 127.0.1.2"
    assert got["plan"]["confirm_guard"] == {"confirmed_values": {"api.z.": ["127.0.1.1"]}}
    assert plan.summary(cutover, {}, {}, check_mode=False)["plan"]["confirm_guard"] == {}


def test_recorded_values_are_the_newest_applied_cutover_per_record(tmp_path: Path) -> None:
    finished = iter(range(1_000_000, 2_000_000, 1000))  # when each run folder last changed: in the order written

    def result(run_id: str, records: list[dict[str, Any]], runbook: str = "dns_cutover", check: bool = False) -> None:
        folder = tmp_path / run_id
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps({"runbook": runbook, "check": check,
                                                        "facts": {"summary": {"records": records}}}))
        when = next(finished)
        os.utime(folder / "result.json", (when, when))
        (folder / "report.html").write_text("written later: the folder's own time is not the run's")

    def rec(name: str, value: str, applied: bool = True) -> dict[str, Any]:
        return {"name": name, "applied": applied, "new": {"values": [value]}}

    result("my-own-run-id", [rec("api.z.", "10.0.0.1"), rec("health.z.", "10.0.0.1")])
    result("20261202T000000Z-dns_cutover-0002", [rec("api.z.", "10.0.0.2")])
    result("20261203T000000Z-dns_cutover-0003", [rec("api.z.", "10.0.0.3", applied=False)])
    result("20261204T000000Z-dns_cutover-0004", [rec("api.z.", "10.0.0.4")], check=True)
    result("20261205T000000Z-redis_restore-0005", [rec("api.z.", "10.0.0.5")], runbook="redis_restore")
    this_run = tmp_path / "20261206T000000Z-dns_cutover-0006"
    assert rollback.recorded_values(str(this_run)) == {"api.z.": ["10.0.0.2"], "health.z.": ["10.0.0.1"]}
    assert rollback.recorded_values(str(this_run), ["API.Z."]) == {"api.z.": ["10.0.0.2"]}


def test_the_cli_hands_the_run_only_declared_parameters_from_the_plan() -> None:
    runbook = catalog.load("dns_cutover")
    guard = {"confirmed_values": {"api.z.": ["127.0.1.1"]}, "dr_lock_dir": "/tmp"}
    facts = {"summary": {"plan": {"confirm_guard": guard}}}
    planned = RunResult(run_id="p", runbook="dns_cutover", status="successful", rc=0, check=True, started_at="",
                        ended_at="", duration_seconds=0.0, inventory="", facts=facts)
    assert cli.confirmed_guard(planned, runbook) == {"confirmed_values": {"api.z.": ["127.0.1.1"]}}
