"""Every runbook publishes the same summary envelope (issue 15 item 3), and it validates against the JSON Schema the
package ships (erlmcp_dr/summary.schema.json): each runbook runs once on one lab (PostgreSQL, Redis, the app, Knot
DNS), as a plan, and its result.json is read back from the run folder and validated. A plan changes nothing, so it
passes no point of no return; the envelope says which runbook it is and that it was a plan."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from runbook_helpers import inventory_path, new_lab, topology

import erlmcp_dr
from erlmcp_dr import catalog
from erlmcp_dr.result import RunResult, summary_schema

pytestmark = pytest.mark.integration

RUNBOOKS = sorted(catalog.discover(Path(__file__).resolve().parents[2] / "playbooks"))
# The required parameters of the runbooks that have any; everything else runs on its defaults.
PARAMETERS: dict[str, dict[str, Any]] = {
    "database_switchover": {"candidate": "pg-b"},
    "dr_drill": {"kind": "database_primary"},
    "failback": {"from_region": "b", "to_region": "a"},
    "incident_notify": {"incident_id": "INC-1", "phase": "declared", "severity": "sev4", "title": "a drill"},
    "pg_restore_in_place": {"target_type": "time", "target": "2026-01-01T00:00:00+00:00"},
    "regional_failover": {"from_region": "a", "to_region": "b", "mode": "unplanned"},
    "service_recovery": {"region": "a"},
}


@pytest.fixture(scope="module")
def whole_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("envelope") / "home"
    with new_lab(app=True, dns=True) as cfg, pytest.MonkeyPatch.context() as patch:
        patch.setenv("ERLMCP_DR_HOME", str(home))
        patch.delenv("ERLMCP_DR_PLAYBOOKS", raising=False)
        before = topology(cfg)
        yield {"cfg": cfg, "inventory": str(inventory_path(cfg))}
        assert topology(cfg) == before, "the lab changed: these runs are plans"


def test_every_runbook_is_covered() -> None:
    assert len(RUNBOOKS) >= 9 and set(PARAMETERS) <= set(RUNBOOKS)


@pytest.mark.parametrize("runbook_name", RUNBOOKS)
def test_the_runbooks_result_json_summary_validates_against_the_published_schema(whole_lab, runbook_name) -> None:
    result = erlmcp_dr.run(runbook_name, inventory=whole_lab["inventory"], extravars=PARAMETERS.get(runbook_name, {}),
                           check=True)
    saved = RunResult.load(result.run_dir)
    summary = saved.facts.get("summary")
    assert isinstance(summary, dict), f"{runbook_name} published no summary: {saved.to_json()[-3000:]}"
    jsonschema.validate(summary, summary_schema())
    assert summary["runbook"] == runbook_name and summary["check_mode"] is True, summary
    assert summary["point_of_no_return_passed"] is False, summary
    assert summary == result.summary  # what erlmcp_dr.run() returns is what result.json holds


def test_the_schema_is_a_valid_json_schema_and_refuses_a_summary_without_the_envelope() -> None:
    schema = summary_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    flat = {"action": "promote", "did": ["promoted pg-b"], "end_state_ok": True, "lock": "postgres:1"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(flat, schema)
