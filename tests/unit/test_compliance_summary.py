"""`runbook compliance` over the audit trail recorded from real lab runs (tests/fixtures/postmortem/): runs,
plans, drills, failures and RTO/RPO met per tier per quarter; a tampered trail refused."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from erlmcp_dr import cli
from erlmcp_dr.reporting import compliance

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "postmortem"
TIERS = {"database_switchover": 1, "database_failover": 1, "incident_notify": 1, "dr_drill": None,
         "regional_failover": None}


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(FIXTURES / "home", home)
    monkeypatch.setenv("ERLMCP_DR_HOME", str(home))
    monkeypatch.setenv("ERLMCP_DR_LOCK_DIR", str(tmp_path / "locks"))
    return home


def test_the_recorded_history_per_tier_and_quarter(home):
    summary = compliance.summarize(home=home, tiers=TIERS)
    (row,) = summary["rows"]
    assert (row["quarter"], row["tier"], row["rto_limit_seconds"], row["rpo_limit_seconds"]) == ("2026-Q4", "1", 300, 1)
    # a switchover, a refused failover, a notification and a failover (tier 1 runbooks), and the drill and the
    # regional stand-in around them (not in the catalog: their summaries say tier 1)
    assert (row["live_runs"], row["succeeded"], row["failed"], row["plans"], row["drills"]) == (6, 5, 1, 0, 1)
    assert row["rto_measured"] == 5
    assert row["rto_met"] == sum(1 for seconds in _durations(home, ok=True) if seconds <= 300)
    assert row["rpo_measured"] == 5 and row["rpo_met"] == 5  # every recovery point anchored and within 1 s


def test_a_composed_run_without_a_declared_tier_is_counted_untiered(home):
    path = home / "runs" / next(line.split()[1] for line in (FIXTURES / "runs.txt").read_text().splitlines()
                                if line.startswith("drill ")) / "result.json"
    data = json.loads(path.read_text())
    del data["facts"]["summary"]["details"]["tier"]
    path.write_text(json.dumps(data))
    rows = {row["tier"]: row for row in compliance.summarize(home=home, tiers=TIERS)["rows"]}
    assert (rows["none"]["live_runs"], rows["none"]["drills"], rows["none"]["rto_limit_seconds"]) == (1, 1, None)


def _durations(home: Path, ok: bool) -> list[float]:
    records = [json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()]
    return [record["duration_seconds"] for record in records if record["kind"] == "run_end"
            and (record["rc"] == 0) == ok]


def test_since_leaves_older_runs_out(home):
    later = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    assert compliance.summarize(since=later, home=home, tiers=TIERS)["rows"] == []


def test_a_result_json_not_anchored_by_its_run_end_is_not_used_for_rpo(home):
    for result in (home / "runs").glob("*/result.json"):
        data = json.loads(result.read_text())
        data["audit_head"] = {"seq": 0, "hash": "0" * 64}
        result.write_text(json.dumps(data))
    rows = compliance.summarize(home=home, tiers=TIERS)["rows"]
    assert all(row["rpo_measured"] == 0 for row in rows)


@pytest.mark.parametrize(("quarter", "when"), [("2026-Q1", "2026-03-31T23:59:59+00:00"),
                                               ("2026-Q2", "2026-04-01T00:00:00+00:00"),
                                               ("2026-Q4", "2026-12-31T23:59:59+00:00")])
def test_quarters_are_utc_calendar_quarters(quarter, when):
    assert compliance.quarter(dt.datetime.fromisoformat(when)) == quarter


def test_the_command_prints_the_table_and_refuses_a_tampered_trail(home, capsys):
    assert cli.main(["compliance", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rows"] and printed["records"] > 0
    assert cli.main(["compliance"]) == 0
    assert "RTO MET" in capsys.readouterr().out
    trail = home / "audit" / "audit.jsonl"
    lines = trail.read_text().splitlines()
    trail.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    assert cli.main(["compliance"]) == cli.EXIT_FAILED
    assert "deleted" in capsys.readouterr().err
    assert cli.main(["compliance", "--since", "yesterday"]) == cli.EXIT_USAGE
