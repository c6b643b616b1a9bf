"""Loading a composed runbook's workflow: every problem found before anything runs, listed at once; references
resolved as data, never templates; the shipped regional_failover workflow loads."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

from erlmcp_dr import catalog
from erlmcp_dr.compose import refs, spec
from erlmcp_dr.compose import run as composed

CHILDREN = {"database_failover": {"candidate": {}, "away_from": {}}, "dns_cutover": {"region": {}, "rollback_of": {}}}
ACTIONS = {"residency_guard": ("to_region",)}
DECLARED = {"to_region": {"type": "str"}}


def problems(steps: List[Dict[str, Any]]) -> List[str]:
    with pytest.raises(spec.WorkflowError) as caught:
        spec.load("composed", {"steps": steps}, DECLARED, CHILDREN, ACTIONS)
    return caught.value.problems


def test_unknown_runbook_and_action_are_refused_naming_the_known_ones() -> None:
    found = problems([{"id": "a", "runbook": "databse_failover"}, {"id": "b", "action": "teleport"}])
    assert found[0].startswith("step a: unknown runbook 'databse_failover'; known: database_failover, dns_cutover")
    assert found[1].startswith("step b: unknown built-in action 'teleport'; known: residency_guard")


def test_a_reference_to_a_later_step_or_to_itself_in_with_is_refused() -> None:
    found = problems([
        {"id": "db", "runbook": "database_failover", "with": {"candidate": {"from": "steps.dns.details.x"}}},
        {"id": "dns", "runbook": "dns_cutover", "with": {"region": {"from": "steps.dns.run_id"}}},
    ])
    assert "step db: reference 'steps.dns.details.x' names step 'dns', which does not run before this point" in found[0]
    assert "names step 'dns', which does not run before this point; steps that do: db" in found[1]


def test_an_undo_may_read_its_own_step_and_expect_its_own_outcome() -> None:
    loaded = spec.load("composed", {"steps": [
        {"id": "dns", "runbook": "dns_cutover", "with": {"region": {"from": "params.to_region"}},
         "expect": [{"equals": [{"from": "steps.dns.completed"}, True]}],
         "undo": {"runbook": "dns_cutover", "with": {"rollback_of": {"from": "steps.dns.run_id"}}}},
        {"id": "db", "runbook": "database_failover", "point_of_no_return": True},
    ]}, DECLARED, CHILDREN, ACTIONS)
    assert loaded.point_of_no_return == "db" and loaded.step("dns").undo is not None


@pytest.mark.parametrize("value", ["{{ lookup('pipe', 'id') }}", "{% if x %}", "a {# comment #}"])
def test_jinja_markers_anywhere_are_refused(value: str) -> None:
    found = problems([{"id": "dns", "runbook": "dns_cutover", "with": {"region": value}}])
    assert any("holds the template marker" in problem and "never Jinja" in problem for problem in found)


def test_unknown_keys_parameters_namespaces_and_undeclared_parameters_are_all_listed_at_once() -> None:
    found = problems([{"id": "db", "runbook": "database_failover", "retries": 3,
                       "with": {"candidate": {"from": "params.to_regoin"}, "force": True,
                                "away_from": {"from": "env.HOME"}}}])
    assert any("unknown key(s) retries" in p for p in found)
    assert any("database_failover has no parameter 'force'" in p for p in found)
    assert any("'params.to_regoin' names a parameter the runbook does not declare" in p for p in found)
    assert any("starts with 'env'" in p for p in found)


def test_point_of_no_return_rules() -> None:
    found = problems([
        {"id": "db", "runbook": "database_failover", "point_of_no_return": True, "undo": {"runbook": "dns_cutover"}},
        {"id": "dns", "runbook": "dns_cutover", "point_of_no_return": True},
        {"id": "after", "runbook": "dns_cutover", "undo": {"runbook": "dns_cutover"}},
    ])
    assert any("the point of no return has no undo" in p for p in found)
    assert any("a second point of no return" in p for p in found)
    assert any("step after: comes after the point of no return" in p for p in found)


def test_duplicate_ids_and_bad_shapes() -> None:
    found = problems([{"id": "x", "runbook": "dns_cutover"}, {"id": "x", "runbook": "dns_cutover"},
                      {"id": "Bad Id", "runbook": "dns_cutover"}, "not a step",
                      {"id": "y", "runbook": "dns_cutover", "action": "residency_guard"},
                      {"id": "z", "runbook": "dns_cutover", "verify_by": "expect"}])
    assert any("id 'x' is used twice" in p for p in found)
    assert any("id 'Bad Id' must be lower-case" in p for p in found)
    assert any("step 4 must be a mapping" in p for p in found)
    assert any("give exactly one of runbook" in p for p in found)
    assert any("verify_by is expect, but there is no expect check" in p for p in found)


def test_resolving_is_data_in_data_out_and_names_what_is_missing() -> None:
    context = {"params": {"to_region": "b"}, "steps": {"db": {"details": {"primary": "pg-b"}}}}
    value = {"fields": {"region": {"from": "params.to_region"}, "list": [{"from": "steps.db.details.primary"}]}}
    assert refs.resolve(value, context) == {"fields": {"region": "b", "list": ["pg-b"]}}
    assert refs.lookup("params.not_given", context) is None
    missing = r"steps.db.details has no 'new_primary' \(found: \['primary'\]\)"
    with pytest.raises(refs.UnresolvedReference, match=missing):
        refs.lookup("steps.db.details.new_primary", context)
    # a value that looks like a template is passed on as the text it is, never rendered
    assert refs.resolve({"from": "params.x"}, {"params": {"x": "{{ 7 * 7 }}"}}) == "{{ 7 * 7 }}"


def test_the_shipped_regional_failover_workflow_loads_with_the_database_as_point_of_no_return() -> None:
    runbook = catalog.load("regional_failover")
    workflow = composed.workflow_of(runbook).for_mode("unplanned")
    assert [step.id for step in workflow.steps] == ["residency", "confirm", "declare", "isolate", "services", "redis",
                                                    "database", "app", "dns", "resolved"]
    assert workflow.point_of_no_return == "database" == runbook.point_of_no_return
    before = [step.id for step in workflow.steps[:workflow.steps.index(workflow.step("database"))] if step.undo]
    assert before == ["declare", "isolate", "redis"]
    assert any("POINT OF NO RETURN" in step.name for step in runbook.steps)


def test_a_composed_run_holds_its_lock_in_the_store_its_children_pick_from_the_same_inventory(tmp_path, monkeypatch):
    """regional_failover and failback take the lock over the whole move in the store the inventory chose, read from
    the inventory file as the children's run_lock reads it: etcd (dr_lock_etcd_*) or the directory store
    (dr_lock_dir); bad input is refused before anything runs, naming its variable. dr_drill holds its lock through the
    same lock_settings (tests/integration/test_etcd_composed.py runs it on etcd)."""
    from erlmcp_dr.compose import inventory
    from erlmcp_dr.compose.inventory import InventoryView
    from erlmcp_dr.errors import ParameterError

    for name in ("ERLMCP_DR_LOCK_STORE", "ERLMCP_DR_LOCK_ETCD_ENDPOINTS"):
        monkeypatch.delenv(name, raising=False)
    hosts = tmp_path / "hosts.yml"
    hosts.write_text("all:\n  vars:\n    dr_lock_store: etcd\n    dr_lock_etcd_ttl: 5\n"
                     "    dr_lock_etcd_endpoints: ['127.0.0.1:2379', 'http://127.0.0.1:2381']\n"
                     "  hosts:\n    localhost: {ansible_connection: local}\n")
    settings = inventory.read(hosts).lock_settings()
    assert settings["kind"] == "etcd" and settings["ttl"] == 5
    assert settings["endpoints"] == ["http://127.0.0.1:2379", "http://127.0.0.1:2381"]

    refusals = (({"dr_lock_store": "etcd"}, "dr_lock_etcd_endpoints", "is empty"),
                ({"dr_lock_store": "zookeeper"}, "dr_lock_store", "expected one of directory, etcd"),
                ({"dr_lock_store": "etcd", "dr_lock_etcd_endpoints": "h:1", "dr_lock_etcd_ttl": 0}, "dr_lock_etcd_ttl",
                 "from 2 to 3600"))
    for variables, parameter, phrase in refusals:
        with pytest.raises(ParameterError) as caught:
            InventoryView(hosts, {}, variables).lock_settings()
        assert caught.value.parameter == parameter and phrase in str(caught.value), (variables, str(caught.value))
    directory = InventoryView(hosts, {}, {"dr_lock_dir": str(tmp_path)}).lock_settings()
    assert directory == {"kind": "directory", "store_dir": str(tmp_path)}
    assert not hasattr(InventoryView, "lock_dir")  # the drill's directory-only lock, which refused etcd, is gone


def test_the_planned_mode_checks_both_regions_healthy_and_hands_the_database_over_by_switchover() -> None:
    """The planned steps are chosen by `modes` (data): no failure confirmation, both regions healthy first, the
    database step a zero-loss switchover (still the point of no return, with Redis's reversible hand-over before
    it), the same ids after it, so reports read steps.database whatever the mode."""
    workflow = composed.workflow_of(catalog.load("regional_failover")).for_mode("planned")
    assert [step.id for step in workflow.steps] == ["residency", "healthy", "ready", "declare", "services", "redis",
                                                    "database", "app", "dns", "resolved"]
    assert workflow.step("database").call.runbook == "database_switchover"
    assert workflow.point_of_no_return == "database"
    assert workflow.step("healthy").call.arguments["require_healthy"] is True
    assert [step.id for step in workflow.steps[:4] if step.undo] == ["declare"]
    assert workflow.step("redis").undo is not None


MODED = {"mode": {"type": "str", "choices": ["unplanned", "planned"]}, "to_region": {"type": "str"}}


def moded(steps: List[Dict[str, Any]]) -> spec.Workflow:
    return spec.load("composed", {"steps": steps}, MODED, CHILDREN, ACTIONS)


def test_steps_chosen_by_mode_may_share_an_id_and_each_mode_is_checked_on_its_own_steps() -> None:
    workflow = moded([
        {"id": "db", "runbook": "database_failover", "modes": ["unplanned"], "point_of_no_return": True},
        {"id": "db", "runbook": "database_failover", "modes": ["planned"], "point_of_no_return": True},
        {"id": "dns", "runbook": "dns_cutover", "with": {"region": {"from": "steps.db.details.region"}}},
    ])
    assert [step.id for step in workflow.for_mode("planned").steps] == ["db", "dns"]
    assert workflow.for_mode("planned").steps[0] is workflow.steps[1]
    with pytest.raises(spec.WorkflowError, match="mode 'failback' is not one of the workflow's modes"):
        workflow.for_mode("failback")


def test_a_wrong_mode_a_reference_to_another_modes_step_and_a_duplicate_within_a_mode_are_refused() -> None:
    with pytest.raises(spec.WorkflowError) as caught:
        moded([
            {"id": "only", "runbook": "dns_cutover", "modes": ["planed"]},
            {"id": "probe", "runbook": "dns_cutover", "modes": ["planned"]},
            {"id": "use", "runbook": "dns_cutover", "with": {"region": {"from": "steps.probe.details.region"}}},
            {"id": "use", "runbook": "dns_cutover", "modes": ["unplanned"]},
        ])
    found = caught.value.problems
    assert "step only: modes planed unknown: the parameter mode takes unplanned, planned" in found
    assert any("names step 'probe', which does not run before this point" in p and p.endswith("(mode unplanned)")
               for p in found), found
    assert any("id 'use' is used twice" in p and p.endswith("(mode unplanned)") for p in found), found
    with pytest.raises(spec.WorkflowError, match="declares no `mode` parameter with choices"):
        spec.load("composed", {"steps": [{"id": "x", "runbook": "dns_cutover", "modes": ["planned"]}]}, DECLARED,
                  CHILDREN, ACTIONS)
