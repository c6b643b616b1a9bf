"""`runbook readiness`'s own exit codes (0 ready, 1 warnings, 2 not ready), kept apart from `runbook run`'s: the
command is registered on the `runbook` parser, and a run that published no verdict is never a ready. The command
against a real lab is in tests/integration/test_readiness_lab.py."""

from __future__ import annotations

import pytest

from erlmcp_dr import cli, readiness_cli


def test_the_readiness_command_is_registered_with_its_exit_codes(capsys):
    args = cli.build_parser().parse_args(["readiness", "-i", "inv.yml", "--json"])
    assert args.handler is readiness_cli.command and args.inventory == "inv.yml" and args.json
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["readiness", "--help"])
    out = capsys.readouterr().out
    assert "0  ready" in out and "1  warnings" in out and "2  not ready" in out


@pytest.mark.parametrize("verdict, code", [("ready", 0), ("warnings", 1), ("not_ready", 2), (None, 2),
                                           ("something else", 2)])
def test_the_verdict_is_the_exit_code_and_no_verdict_is_not_ready(verdict, code):
    found = readiness_cli.as_json({"verdict": verdict, "checks": [{"name": "x"}]}, "run-1", verdict)
    assert found["exit_code"] == code
    assert found["verdict"] == (verdict or "not_ready") and found["run_id"] == "run-1"
