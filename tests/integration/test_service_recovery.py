"""The service_recovery runbook through the CLI on one lab (issue 18, service_recovery): the lab's seven services
per region are real processes (lab/services.py) answering /health over HTTP, behind the region's real PostgreSQL and
Redis. Each region serves one test so the lab is shared: region a the happy path and its re-run, region b a service
that never gets healthy, region c a cycle and an unknown name refused in check mode, then a run killed with -9
mid-way and its re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for
from runbook_helpers import (
    failure_message,
    inventory_copy,
    inventory_path,
    new_lab,
    run_json,
    runbook_command,
    summary,
    venv_path,
)

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import services as lab_services

pytestmark = pytest.mark.integration

FAST = ("-e", "interval=0.1", "-e", "backing_timeout=20")
KILL_GUARD = 120  # seconds the killed run and the polls get; a hang guard, never a measure
DEADLINE = 3.0  # the failing service's start_timeout: room for two interpreter starts on a loaded machine


@pytest.fixture(scope="module")
def services_lab() -> Iterator[lab.LabConfig]:
    with new_lab() as cfg:
        yield cfg


def region_pids(cfg: lab.LabConfig, region: str) -> dict[str, int | None]:
    return {svc.name: lab_services.service_pid(svc) for svc in lab_services.services(cfg) if svc.region == region}


def healthy(svc: lab_services.LabService) -> bool:
    try:
        with urllib.request.urlopen(f"{svc.url}/health", timeout=5) as response:  # noqa: S310 (http only)
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def rows(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in summary(result)["services"]}


def run(cfg: lab.LabConfig, region: str, *extra: str, expect_rc: int, inventory: Path | None = None,
        action: str = "run") -> dict[str, Any]:
    args = [action, "service_recovery", "-i", str(inventory or inventory_path(cfg)), "-e", f"region={region}", *FAST,
            *extra]
    if action == "run":
        args.append("--yes")
    return run_json(*args, expect_rc=expect_rc)[1]


def start_run(cfg: lab.LabConfig, region: str) -> subprocess.Popen[str]:
    """`runbook run service_recovery` in the background, its result JSON on stdout."""
    return subprocess.Popen([*runbook_command(), "run", "service_recovery", "-i", str(inventory_path(cfg)),
                             "-e", f"region={region}", *FAST, "--yes", "--json"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, PATH=venv_path()))


def test_each_service_starts_once_its_own_dependencies_are_healthy_in_parallel_levels(services_lab, home) -> None:
    for svc in lab_services.services(services_lab):
        if svc.region == "a":
            lab_services.set_delay(svc, 0.5)  # long enough that a level's siblings start before either answers
    planned = run(services_lab, "a", expect_rc=0, action="plan")
    assert summary(planned)["will_start"] == ["auth", "session_manager", "api_gateway", "resource_management",
                                              "tool_orchestration", "monitoring", "dashboard"]
    assert summary(planned)["plan"]["will_change"][0] == "start auth"
    assert set(region_pids(services_lab, "a").values()) == {None}, "check mode started a service"

    # session_manager answers 503 until api_gateway is healthy: api_gateway (needs auth only) must not wait for its
    # level-1 sibling; then session_manager is let through and the rest follows.
    session_manager = lab_services.service(services_lab, "session_manager", "a")
    lab_services.set_failing(session_manager, True)
    proc = start_run(services_lab, "a")
    try:
        wait_for(lambda: healthy(lab_services.service(services_lab, "api_gateway", "a")), KILL_GUARD, interval=0.05,
                 what="api_gateway-a healthy while session_manager-a is not")
        assert not healthy(session_manager)
        lab_services.set_failing(session_manager, False)
        stdout, _ = proc.communicate(timeout=KILL_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout[-3000:]
    result = json.loads(stdout)
    found = summary(result)
    assert found["levels"] == [["auth", "session_manager"], ["api_gateway", "resource_management"],
                               ["tool_orchestration", "monitoring"], ["dashboard"]]
    assert found["healthy"] == [name for level in found["levels"] for name in level]
    assert found["failed"] == found["not_started"] == [] and found["end_state"]["ok"] is True
    assert found["backing"] == [dict(name="pg-a", kind="postgres", healthy=True, waited=found["backing"][0]["waited"]),
                                dict(name="redis-a", kind="redis", healthy=True, waited=found["backing"][1]["waited"])]
    by_name = rows(result)
    for row in by_name.values():
        # Order: a service starts only after the first healthy sample of each of its dependencies.
        assert all(row["started_at"] >= by_name[dep]["healthy_at"] for dep in row["depends_on"]), row
    # Parallel: both level-1 services started before either answered healthy; api_gateway started before its
    # level-1 sibling session_manager was healthy (it waits for its own dependencies only; it was healthy itself
    # before session_manager was let through).
    assert max(by_name[n]["started_at"] for n in ("auth", "session_manager")) < by_name["auth"]["healthy_at"]
    assert by_name["api_gateway"]["started_at"] < by_name["session_manager"]["healthy_at"]
    pids = region_pids(services_lab, "a")
    assert None not in pids.values()

    again = run(services_lab, "a", expect_rc=0)
    assert summary(again)["started"] == [] and summary(again)["did"] == ["nothing was changed"]
    assert {row["action"] for row in summary(again)["services"]} == {"already_healthy"}
    assert region_pids(services_lab, "a") == pids


def test_a_service_that_never_gets_healthy_stops_the_run_at_its_deadline(services_lab, home) -> None:
    gateway = lab_services.service(services_lab, "api_gateway", "b")
    lab_services.set_failing(gateway, True)

    def short_deadline(data: dict[str, Any]) -> None:
        data["all"]["children"]["services"]["hosts"][gateway.host_name]["service_start_timeout"] = DEADLINE

    inventory = inventory_copy(services_lab, "gateway-deadline", short_deadline)
    result = run(services_lab, "b", expect_rc=1, inventory=inventory)
    found = summary(result)
    assert found["failed"] == ["api_gateway"], found
    # Its sibling started with it: healthy, or `unconfirmed` when the failed gate came first (its gate abandoned).
    assert found["healthy"] + found["unconfirmed"] == ["auth", "session_manager", "resource_management"]
    assert found["not_started"] == ["tool_orchestration", "monitoring", "dashboard"]
    assert found["end_state"]["ok"] is False and "api_gateway failed its health gate" in failure_message(result)
    assert "told to fail" in rows(result)["api_gateway"]["error"]
    offsets = rows(result)["api_gateway"]["sample_offsets"]
    # Reported at its deadline plus at most one interval: the verdict is the first answer that came past the deadline,
    # every earlier one came before it (each wait is the interval or what is left of the deadline, if shorter).
    assert offsets[-1] >= DEADLINE and all(offset < DEADLINE for offset in offsets[:-1]), offsets
    pids = region_pids(services_lab, "b")
    assert [name for name, pid in pids.items() if pid is None] == ["tool_orchestration", "monitoring", "dashboard"]


def test_a_cycle_or_an_unknown_dependency_is_refused_in_check_mode_naming_it(services_lab, home) -> None:
    def cycle(data: dict[str, Any]) -> None:
        data["all"]["children"]["services"]["hosts"]["auth-c"]["service_depends_on"] = ["api_gateway"]

    def unknown(data: dict[str, Any]) -> None:
        data["all"]["children"]["services"]["hosts"]["session_manager-c"]["service_depends_on"] = ["database"]

    refused = run(services_lab, "c", expect_rc=1, action="plan",
                  inventory=inventory_copy(services_lab, "cycle", cycle))
    assert "cycle: auth -> api_gateway -> auth" in failure_message(refused)
    assert summary(refused)["refusal"] and summary(refused)["healthy"] == []
    refused = run(services_lab, "c", expect_rc=1, action="plan",
                  inventory=inventory_copy(services_lab, "unknown", unknown))
    assert "session_manager depends on database, which is not a service of this region" in failure_message(refused)
    assert set(region_pids(services_lab, "c").values()) == {None}, "a refused plan started a service"


def test_a_run_killed_mid_way_is_finished_by_a_rerun_that_restarts_no_healthy_service(services_lab, home) -> None:
    for name in ("api_gateway", "resource_management"):
        lab_services.set_delay(lab_services.service(services_lab, name, "c"), 3.0)  # the kill lands on level 2
    first = {svc.name: svc for svc in lab_services.services(services_lab) if svc.region == "c"}
    proc = start_run(services_lab, "c")
    try:
        wait_for(lambda: healthy(first["auth"]) and healthy(first["session_manager"])
                 and lab_services.service_pid(first["api_gateway"]) is not None, KILL_GUARD, interval=0.05,
                 what="region c's level 1 healthy and level 2 started")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=KILL_GUARD)
    before = region_pids(services_lab, "c")
    healthy_before = {name for name, svc in first.items() if healthy(svc)}
    assert {"auth", "session_manager"} <= healthy_before and "dashboard" not in healthy_before

    result = run(services_lab, "c", expect_rc=0)
    found = summary(result)
    assert sorted(found["healthy"]) == sorted(first), found
    assert not set(found["started"]) & healthy_before, found["started"]
    assert all(rows(result)[name]["action"] == "already_healthy" for name in healthy_before)
    after = region_pids(services_lab, "c")
    assert {name: pid for name, pid in after.items() if before[name]} == {n: p for n, p in before.items() if p}
    assert json.dumps(result).count(lab.LAB_PASSWORD) == 0
