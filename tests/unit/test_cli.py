"""The `runbook` command: arguments, exit codes, errors that name what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from erlmcp_dr import cli, runner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"


def _cli(*args: str, stdin=subprocess.DEVNULL, env_extra=None) -> subprocess.CompletedProcess:
    """The real command in a child process: stdin is not a terminal."""
    environment = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "erlmcp_dr", *args], stdin=stdin, capture_output=True, text=True,
                          env=environment, timeout=300)


def test_help_describes_commands_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for word in ("list", "show", "plan", "run", "report", "docs", "lab", "exit codes", "ERLMCP_DR_HOME"):
        assert word in out
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "--yes" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main([])
    assert caught.value.code == 2


def test_list_and_show(home, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["NAME", "TIER", "RTO", "RPO", "CONFIRM", "TITLE"]
    assert "guarded" in out and "local_smoke" in out and "not_a_runbook" not in out

    assert cli.main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [item["name"] for item in listed] == ["guarded", "leaky", "local_smoke"]
    assert listed[0]["parameters"] == ["target", "wait_seconds"]

    assert cli.main(["show", "guarded"]) == 0
    out = capsys.readouterr().out
    assert "guarded: Guarded change" in out
    assert "confirmation required" in out
    assert "targets: localhost, postgres" in out
    assert "target" in out and "Where to point things." in out
    assert "  role some_role" in out

    assert cli.main(["show", "local_smoke", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["parameters"]["repeat"]["type"] == "int"
    assert {"depth": 1, "name": "Inside the block", "kind": "task"} in shown["steps"]


def test_playbooks_dir_option(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ERLMCP_DR_PLAYBOOKS", raising=False)
    assert cli.main(["--playbooks-dir", str(FIXTURES), "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_unknown_runbook_exits_2_naming_it(home, capsys):
    assert cli.main(["run", "nosuch", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "unknown runbook 'nosuch'" in err
    assert "guarded, leaky, local_smoke" in err
    assert cli.main(["show", "local_smok"]) == 2
    assert "Did you mean 'local_smoke'?" in capsys.readouterr().err


def test_missing_required_parameter_exits_2_naming_it(home, inventory, capsys):
    assert cli.main(["plan", "guarded", "-i", str(inventory)]) == 2
    err = capsys.readouterr().err
    assert "missing required parameter 'target'" in err
    assert "-e target=VALUE" in err
    assert not (home / "runs").exists()


def test_bad_parameters_exit_2_naming_them(home, inventory, capsys):
    assert cli.main(["plan", "local_smoke", "-i", str(inventory), "-e", "colour=red"]) == 2
    assert "unsupported parameter 'colour'" in capsys.readouterr().err
    assert cli.main(["plan", "local_smoke", "-i", str(inventory), "-e", "repeat=many"]) == 2
    assert "parameter 'repeat'" in capsys.readouterr().err
    assert cli.main(["plan", "local_smoke", "-i", str(inventory), "-e", "justaword"]) == 2
    assert "expected key=value" in capsys.readouterr().err
    assert cli.main(["plan", "local_smoke", "-i", str(tmp := inventory.parent / "nope")]) == 2
    assert f"inventory {tmp} does not exist" in capsys.readouterr().err
    assert not (home / "runs").exists()


def test_confirmation_is_refused_without_a_terminal(home, inventory):
    done = _cli("run", "guarded", "-i", str(inventory), "-e", "target=pg-b")
    assert done.returncode == 2, done.stderr
    assert "needs confirmation" in done.stderr
    assert "--yes" in done.stderr
    assert not (home / "runs").exists()


def test_a_run_the_playbook_lock_turns_away_exits_3_naming_the_holder(home, inventory, capsys, monkeypatch):
    """The lock is the playbook's (erlmcp.dr.run_lock): a failed lock step with busy: true becomes RunBusy."""
    holder = {"run_id": "20261123T150102Z-local_smoke-beef", "runbook": "local_smoke", "pid": 4242,
              "host": "ctl-1", "started_at": "2026-11-23T15:01:02Z"}
    monkeypatch.setattr(runner, "busy_holder", lambda steps: holder)
    assert cli.main(["run", "local_smoke", "-i", str(inventory)]) == 3
    err = capsys.readouterr().err
    assert "another run is using this inventory" in err
    assert "run 20261123T150102Z-local_smoke-beef of local_smoke (pid 4242 on ctl-1, since 2026-11-23T15:01:02Z)" in err
    assert "Wait for it to finish or stop it (kill -TERM 4242 on ctl-1)" in err


def test_a_limit_that_skips_the_controller_play_is_refused(home, inventory):
    done = _cli("run", "local_smoke", "-i", str(inventory), "--limit", "pg-b")
    assert done.returncode == 2, done.stderr
    assert "--limit 'pg-b' leaves out 'localhost'" in done.stderr
    assert "nothing would run" in done.stderr and "--limit 'localhost,pg-b'" in done.stderr
    assert not (home / "runs").exists()
    done = _cli("plan", "local_smoke", "-i", str(inventory), "--limit", "localhost")
    assert done.returncode == 0, done.stderr


def test_plan_runs_in_check_mode_and_prints_json(home, inventory):
    done = _cli("plan", "local_smoke", "-i", str(inventory), "-e", "greeting=hey", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["check"] is True and result["status"] == "successful" and result["succeeded"] is True
    assert result["facts"]["summary"] == {"greeting": "hey", "check_mode": True}
    assert "[ok]" in done.stderr and "Say the greeting" in done.stderr  # live progress


def test_failed_run_exits_1_then_report_shows_it(home, inventory, capsys):
    done = _cli("run", "local_smoke", "-i", str(inventory), "-e", "fail_step=true", "--run-id", "r1")
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("[FAILED] local_smoke: failed")
    assert "failed at: Fail on request on localhost" in done.stdout
    assert "[failed]" in done.stderr

    assert cli.main(["report", "r1"]) == 0
    assert "# Local smoke test: FAILED" in capsys.readouterr().out
    assert cli.main(["report", "latest", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == "r1"
    assert cli.main(["report", "r2"]) == 2
    assert "no run 'r2'" in capsys.readouterr().err


def test_docs_check_and_write(home, tmp_path, capsys):
    out = tmp_path / "pages"
    assert cli.main(["docs", "--check", "--out", str(out)]) == 1
    assert "missing:" in capsys.readouterr().out
    assert cli.main(["docs", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert cli.main(["docs", "--check", "--out", str(out)]) == 0
    (out / "guarded.md").write_text("hand edit\n", encoding="utf-8")
    assert cli.main(["docs", "--check", "--out", str(out)]) == 1
    assert f"drifted: {out / 'guarded.md'}" in capsys.readouterr().out
