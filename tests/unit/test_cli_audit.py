"""`runbook audit verify|show`, `runbook report ID --html` and `--operator`, on a real run of the fixture runbook
local_smoke (localhost only) through the runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erlmcp_dr import audit, cli, runner


@pytest.fixture
def smoke_run(home: Path, inventory: Path):
    return runner.run("local_smoke", inventory=inventory, extravars={"api_token": "tok-secret-123"},
                      operator="alice (INC-42)")


def test_a_run_leaves_its_trail_and_report_html(smoke_run, capsys) -> None:
    records = audit.records()
    assert [r["kind"] for r in records] == ["run_start", "step", "run_end"]
    start, step, end = records
    assert {r["run_id"] for r in records} == {smoke_run.run_id}
    assert start["parameters"]["api_token"] == "********" and start["check"] is False
    assert start["who"] == {"user": audit.os_user(), "operator": "alice (INC-42)", "host": start["who"]["host"]}
    assert (step["step"], step["target"], step["result"]) == ("Run a command (skipped in check mode)", "localhost",
                                                             "changed")
    assert (end["result"], end["rc"], end["targets"]) == ("successful", 0, ["localhost"])
    assert b"tok-secret-123" not in audit.audit_path().read_bytes()
    assert smoke_run.operator == "alice (INC-42)"

    assert cli.main(["audit", "verify"]) == 0
    assert "3 record(s), chain intact" in capsys.readouterr().out
    assert cli.main(["audit", "show", "--json", "--target", "localhost", "--since", "1h"]) == 0
    assert [r["kind"] for r in json.loads(capsys.readouterr().out)] == ["run_start", "step", "run_end"]
    assert cli.main(["audit", "show", "--runbook", "database_failover"]) == 0
    assert "no audit records match" in capsys.readouterr().out
    assert cli.main(["audit", "show", "--since", "yesterday"]) == 2
    assert "neither ISO 8601" in capsys.readouterr().err

    # report --html: the page's path; written again from result.json when it is missing
    page = Path(smoke_run.run_dir) / "report.html"
    assert page.is_file() and oct(page.stat().st_mode & 0o777) == "0o600"
    assert cli.main(["report", smoke_run.run_id, "--html"]) == 0
    assert capsys.readouterr().out.strip() == str(page)
    page.unlink()
    assert cli.main(["report", "latest", "--html"]) == 0
    assert capsys.readouterr().out.strip() == str(page)
    assert "Local smoke test: succeeded" in page.read_text()
    with pytest.raises(SystemExit):
        cli.main(["report", "latest", "--html", "--json"])
    capsys.readouterr()

    # tampering: verify exits 1 naming the record
    path = audit.audit_path()
    lines = path.read_text().splitlines()
    del lines[1]
    path.write_text("\n".join(lines) + "\n")
    assert cli.main(["audit", "verify"]) == 1
    assert f"line 2 (run {smoke_run.run_id}): record(s) 2 missing before it: deleted" in capsys.readouterr().out
    assert cli.main(["audit", "verify", "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["ok"] is False and verdict["records"] == 2
