"""rollback_of naming a run of another runbook (issue 16 row 11: an unclear message) is refused saying so: which
runbook that run was, and that only dns_cutover runs can be rolled back - for a finished run (its result.json) and
for one cut off (its run.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import rollback  # noqa: E402


@pytest.mark.parametrize("written", ["result.json", "run.json"])
def test_rollback_of_a_redis_run_names_its_runbook(tmp_path: Path, written: str) -> None:
    earlier = tmp_path / "runs" / "20261206T080000Z-redis_failover-ab12"
    earlier.mkdir(parents=True)
    (earlier / written).write_text(json.dumps({"runbook": "redis_failover", "facts": {"summary": {}}}))
    with pytest.raises(rollback.RollbackError) as caught:
        rollback.rollback_source(str(tmp_path / "runs" / "this-run"), earlier.name)
    assert str(caught.value).startswith(f"rollback_of={earlier.name}: run {earlier.name} is a run of runbook "
                                        "redis_failover, not of dns_cutover")
    assert "values=<the values it replaced>" in str(caught.value)


def test_a_dns_cutover_run_is_still_read(tmp_path: Path) -> None:
    earlier = tmp_path / "runs" / "cutover"
    earlier.mkdir(parents=True)
    (earlier / "result.json").write_text(json.dumps({"runbook": "dns_cutover", "facts": {"summary": {"records": []}}}))
    assert rollback.rollback_source(str(tmp_path / "runs" / "this-run"), "cutover")["runbook"] == "dns_cutover"
