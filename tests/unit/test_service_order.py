"""service_recovery's decisions, pure (module_utils/_services/order.py): the levels from the dependency graph, a
cycle or an unknown name refused naming the path, what a re-run starts, the report, the inventory's inputs and the
summary envelope (issue 18, service_recovery). No process."""

from __future__ import annotations

from typing import Any

import pytest

from erlmcp_dr.lab import services as lab_services
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._services import order  # noqa: E402


def svc(name: str, *depends_on: str, **extra: Any) -> dict[str, Any]:
    return dict(name=name, start_command=["true"], health_url=f"http://127.0.0.1:1/{name}", depends_on=list(depends_on),
                **extra)


def lab_graph() -> list[dict[str, Any]]:
    return order.check_services([svc(name, *deps) for name, deps in lab_services.SERVICE_GRAPH])


def test_the_lab_graph_gives_four_levels_with_parallel_services() -> None:
    assert order.levels(lab_graph()) == [
        ["auth", "session_manager"],
        ["api_gateway", "resource_management"],
        ["tool_orchestration", "monitoring"],
        ["dashboard"],
    ]


def test_every_service_comes_after_each_of_its_dependencies() -> None:
    services = lab_graph()
    level_of = {name: i for i, level in enumerate(order.levels(services)) for name in level}
    for service in services:
        assert all(level_of[dep] < level_of[service["name"]] for dep in service["depends_on"])


def test_a_cycle_is_refused_naming_its_path() -> None:
    services = order.check_services([svc("auth", "api_gateway"), svc("api_gateway", "auth"), svc("dashboard")])
    assert order.find_cycle(services) == ["auth", "api_gateway", "auth"]
    with pytest.raises(ModuleFailure, match="cycle: auth -> api_gateway -> auth"):
        order.levels(services)


def test_a_longer_cycle_behind_a_sound_service_is_named_from_where_it_closes() -> None:
    services = order.check_services([svc("dashboard", "monitoring"), svc("monitoring", "api_gateway"),
                                     svc("api_gateway", "tool_orchestration"), svc("tool_orchestration", "monitoring")])
    assert order.find_cycle(services) == ["monitoring", "api_gateway", "tool_orchestration", "monitoring"]


def test_a_service_that_depends_on_itself_is_a_cycle() -> None:
    assert order.find_cycle(order.check_services([svc("auth", "auth")])) == ["auth", "auth"]


def test_an_unknown_dependency_is_refused_naming_the_service_and_the_known_names() -> None:
    services = order.check_services([svc("auth"), svc("api_gateway", "auht")])
    problem = order.refusal(services)
    assert problem is not None
    assert "api_gateway depends on auht" in problem and "known: api_gateway, auth" in problem
    assert "service_depends_on" in problem


@pytest.mark.parametrize(("services", "expected"), [
    ([], "no service to recover"),
    ([svc("auth"), svc("auth")], "auth is listed twice"),
    ([dict(name="auth", start_command=["x"])], "auth has no health_url"),
    ([svc("auth", start_timeout=0)], "start_timeout is 0.0: expected seconds above 0"),
    ([dict(svc("auth"), start_command="systemctl start auth")], "expected a list of arguments"),
])
def test_bad_services_are_refused_with_the_field_to_fix(services: list[dict[str, Any]], expected: str) -> None:
    with pytest.raises(ModuleFailure, match=expected):
        order.check_services(services)


def test_depends_on_as_a_comma_separated_string_is_a_list() -> None:
    assert order.check_services([svc("a"), dict(svc("b"), depends_on="a, c")])[1]["depends_on"] == ["a", "c"]


def test_a_rerun_starts_only_what_is_not_healthy() -> None:
    services = lab_graph()
    planned = order.plan(services, healthy_now=["auth", "session_manager", "api_gateway"])
    assert planned["will_start"] == ["resource_management", "tool_orchestration", "monitoring", "dashboard"]
    assert planned["actions"]["auth"] == "healthy" and planned["actions"]["dashboard"] == "start"
    assert order.plan(services, [s["name"] for s in services])["will_start"] == []


def test_the_first_failed_gate_leaves_the_later_levels_not_started() -> None:
    levels = order.levels(lab_graph())
    found = order.outcome(levels, {"auth": "healthy", "session_manager": "healthy", "api_gateway": "failed",
                                   "resource_management": "unconfirmed"})
    assert found == dict(healthy=["auth", "session_manager"], failed=["api_gateway"],
                         unconfirmed=["resource_management"],
                         not_started=["tool_orchestration", "monitoring", "dashboard"], ok=False)
    assert order.outcome(levels, {name: "healthy" for level in levels for name in level})["ok"] is True


def hostvars() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {
        "pg-a": dict(dr_region="a", pg_host="127.0.0.1", pg_port=5432),
        "pg-b": dict(dr_region="b", pg_host="127.0.0.1", pg_port=5433),
        "redis-b": dict(dr_region="b", redis_host="127.0.0.1", redis_port="6380"),
    }
    for region in "ab":
        found[f"auth-{region}"] = dict(dr_region=region, service_name="auth", service_start_command=["true"],
                                       service_health_url="http://x/health")
    found["api-b"] = dict(dr_region="b", service_name="api_gateway", service_start_command=["true"],
                          service_health_url="http://y/health", service_depends_on=["auth"], service_start_timeout=5)
    return found


def test_a_regions_inputs_are_its_services_database_and_redis() -> None:
    inputs = order.region_inputs(["auth-a", "auth-b", "api-b"], ["pg-a", "pg-b"], ["redis-b"], hostvars(), "b")
    assert [s["name"] for s in inputs["services"]] == ["auth", "api_gateway"]
    assert inputs["services"][1]["depends_on"] == ["auth"] and inputs["services"][1]["start_timeout"] == 5
    assert inputs["backing"] == [dict(name="pg-b", kind="postgres", host="127.0.0.1", port=5433),
                                 dict(name="redis-b", kind="redis", host="127.0.0.1", port=6380)]
    assert inputs["lock_key"] == "services:b:api_gateway,auth"


def test_a_region_without_services_is_refused_naming_the_regions_that_have_some() -> None:
    with pytest.raises(ModuleFailure, match="region z has no service.*regions with services: a, b"):
        order.region_inputs(["auth-a", "auth-b"], [], [], hostvars(), "z")


def test_the_summary_of_a_refused_run_lists_every_service_not_started() -> None:
    inputs = order.region_inputs(["auth-b", "api-b"], [], [], hostvars(), "b")
    refused = dict(failed=True, msg="the services' dependencies form a cycle: auth -> api_gateway -> auth")
    found = order.summary(refused, inputs, completed=False, check_mode=False)
    assert found["runbook"] == "service_recovery" and found["lock"] == {"key": "services:b:api_gateway,auth"}
    assert found["details"]["not_started"] == ["auth", "api_gateway"] and found["details"]["healthy"] == []
    assert found["end_state"] == {"ok": False, "problems": [refused["msg"]]}
    assert found["did"] == ["nothing was changed"]
    planned = order.summary(refused, inputs, completed=False, check_mode=True)
    assert planned["details"]["not_started"] == [] and planned["end_state"]["ok"] is None


def test_a_service_is_ready_as_soon_as_its_own_dependencies_are_healthy_not_its_whole_level() -> None:
    services = lab_graph()
    assert order.ready(services, healthy=[], launched=[]) == ["auth", "session_manager"]
    # session_manager still starting: api_gateway needs only auth, so it starts now; resource_management waits.
    assert order.ready(services, healthy=["auth"], launched=["auth", "session_manager"]) == ["api_gateway"]
    assert order.ready(services, healthy=["auth", "session_manager", "api_gateway"],
                       launched=["auth", "session_manager", "api_gateway"]) == [
        "tool_orchestration", "resource_management", "monitoring"]
