"""The region_health runbook through the CLI, on a lab with the application: a healthy lab, then region a's
database primary stopped (its application fails too, region b and c stay healthy), then a region that does not
exist. Read-only: the lab's topology is the same afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from runbook_helpers import inventory_path, new_lab, run_json, runbook_cli, summary, topology

from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

FAST = ("-e", "interval=0.05", "-e", "timeout=20")


@pytest.fixture(scope="module")
def app_lab() -> Iterator[lab.LabConfig]:
    with new_lab(app=True) as cfg:
        yield cfg


def parts(result: dict) -> dict[tuple[str, str], dict]:
    return {(row["region"], row["component"]): row for row in summary(result)["checks"]}


def test_a_healthy_lab_is_one_table_of_healthy_regions(app_lab: lab.LabConfig, home) -> None:
    before = topology(app_lab)
    cli, result = run_json("run", "region_health", "-i", str(inventory_path(app_lab)), *FAST, expect_rc=0)
    facts = summary(result)
    assert facts["regions"] == {"a": "healthy", "b": "healthy", "c": "healthy"}, cli
    assert facts["healthy_regions"] == ["a", "b", "c"] and facts["failed_regions"] == []
    found = parts(result)
    assert set(found) == {(r, c) for r in "abc" for c in ("app", "database", "redis")}
    assert found[("a", "database")]["writable"] is True and found[("b", "database")]["writable"] is False
    assert found[("a", "redis")]["role"] == "primary" and found[("c", "redis")]["role"] == "replica"
    assert found[("b", "app")]["status"] == 200
    assert not [step for step in result["steps"] if step["changed"]]
    assert facts["table"][0].split()[:3] == ["region", "verdict", "part"]
    assert lab.LAB_PASSWORD not in cli.stdout + cli.stderr
    assert topology(app_lab) == before

    text = runbook_cli("run", "region_health", "-i", str(inventory_path(app_lab)), *FAST, "-e", "regions=b")
    assert text.rc == 0, text
    assert "healthy" in text.stdout + text.stderr


def test_a_stopped_primary_fails_its_region_and_the_gate(app_lab: lab.LabConfig, home) -> None:
    app_lab.node("pg-a").server().stop(timeout=lab.START_TIMEOUT)
    cli, result = run_json("run", "region_health", "-i", str(inventory_path(app_lab)), *FAST,
                           "-e", "require_healthy=true", expect_rc=1)
    facts = summary(result)
    assert facts["regions"]["a"] == "failed", cli
    assert facts["failed_regions"] == ["a"] or set(facts["failed_regions"]) >= {"a"}
    found = parts(result)
    assert found[("a", "database")]["verdict"] == "failed" and found[("a", "database")]["samples"] == 3
    assert "refused" in found[("a", "database")]["error"].lower()
    assert found[("a", "app")]["verdict"] == "failed" and found[("a", "app")]["status"] == 503
    assert found[("b", "database")]["verdict"] == "healthy" and found[("b", "redis")]["verdict"] == "healthy"
    assert "require_healthy" in cli.stdout + cli.stderr + str(result.get("error"))


def test_an_unknown_region_is_refused_naming_the_regions_found(app_lab: lab.LabConfig, home) -> None:
    cli = runbook_cli("run", "region_health", "-i", str(inventory_path(app_lab)), *FAST, "-e", "regions=z")
    assert cli.rc == 1, cli
    assert "no service was checked" in cli.stdout + cli.stderr and "regions found: a, b, c" in cli.stdout + cli.stderr
