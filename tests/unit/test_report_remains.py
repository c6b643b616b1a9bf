"""`runbook report` on a run folder whose result.json is torn or missing (a disk that filled up before results were
written atomically, issue 16 row 8): it shows what the folder holds and says what is missing, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erlmcp_dr import cli, runner


@pytest.fixture
def smoke(home: Path, inventory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ERLMCP_DR_LOCK_DIR", str(tmp_path / "locks"))
    return Path(runner.run("local_smoke", inventory=inventory, run_id="smoke").run_dir)


def test_report_of_a_torn_result_says_what_is_missing(smoke: Path, capsys: pytest.CaptureFixture) -> None:
    text = (smoke / "result.json").read_text()
    (smoke / "result.json").write_text(text[: len(text) // 2])
    (smoke / "report.md").unlink()
    (smoke / "report.html").unlink()
    assert cli.main(["report", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "result.json could not be read" in out and "drawn from what the run folder holds" in out
    assert "Say the greeting" in out  # the steps ansible-runner's events still show
    assert cli.main(["report", "smoke", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "successful"  # run.json's final status
    assert cli.main(["report", "smoke", "--html"]) == 0
    assert "result.json could not be read" in (smoke / "report.html").read_text()
