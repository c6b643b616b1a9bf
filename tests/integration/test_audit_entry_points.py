"""Every entry point appends to the audit trail (issue 23 row 10): a runbook run by plain ansible-playbook (the way
AWX runs it) records its start, each change and its end through the erlmcp.dr.audit_trail callback (enabled in the
repository's ansible.cfg), with its entry point; the runbook CLI records the same run once, not twice; and the
trail they leave together verifies intact. On the real lab (PostgreSQL streaming replication)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import lab_inventory
from runbook_helpers import CLI_HANG_GUARD, VENV_BIN, playbook_env, runbook_command, venv_path

from erlmcp_dr import paths
from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration


def _trail(home: Path) -> list[dict]:
    return [json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()]


def _env(tmp_path: Path, home: Path) -> dict:
    return {"ERLMCP_DR_HOME": str(home), "ERLMCP_DR_LOCK_DIR": str(tmp_path / "locks")}


def _verify(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*runbook_command(), "audit", "verify"], capture_output=True, text=True,
                          env=dict(os.environ, PATH=venv_path(), **env), timeout=CLI_HANG_GUARD, check=False)


def test_plain_ansible_playbook_and_awx_runs_leave_start_changes_and_end(fresh_lab: lab.LabConfig, tmp_path: Path
                                                                         ) -> None:
    home = tmp_path / "home"
    env = _env(tmp_path, home)
    playbook = str(paths.collection_root() / "playbooks" / "database_switchover.yml")
    plain = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(lab_inventory(fresh_lab)), playbook,
                            "-e", "candidate=pg-b"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           env=dict(playbook_env(), **env), timeout=CLI_HANG_GUARD, check=False)
    assert plain.returncode == 0, plain.stdout[-4000:] + plain.stderr[-2000:]

    records = _trail(home)
    start, end = records[0], records[-1]
    steps = records[1:-1]
    assert (start["kind"], end["kind"]) == ("run_start", "run_end")
    assert {record["run_id"] for record in records} == {start["run_id"]}
    assert start["run_id"].startswith("ansible-playbook-")  # the run id the run lock's holder record names too
    assert {record["entry_point"] for record in records} == {"ansible-playbook"}
    assert (start["runbook"], start["parameters"], start["check"]) == ("database_switchover", {"candidate": "pg-b"},
                                                                        False)
    assert steps and {record["kind"] for record in steps} == {"step"}
    assert any(record["action"] == "erlmcp.dr.pg_promote" for record in steps), [r["step"] for r in steps]
    assert (end["result"], end["rc"], end["failing_step"]) == ("successful", 0, None)

    # An AWX job runs the same ansible-playbook with awx_job_id and awx_user_name among its extra vars.
    awx = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(lab_inventory(fresh_lab)), playbook,
                          "-e", "candidate=pg-a", "-e", "awx_job_id=42", "-e", "awx_user_name=carol"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         env=dict(playbook_env(), **env), timeout=CLI_HANG_GUARD, check=False)
    assert awx.returncode == 0, awx.stdout[-4000:]
    job = _trail(home)[len(records):]
    assert {record["entry_point"] for record in job} == {"awx"}
    assert {record["who"]["operator"] for record in job} == {"carol"}
    assert (job[0]["kind"], job[-1]["kind"], job[-1]["result"]) == ("run_start", "run_end", "successful")

    verify = _verify(env)
    assert verify.returncode == 0 and f"{len(records) + len(job)} record(s), chain intact" in verify.stdout, (
        verify.stdout + verify.stderr)


def test_a_cli_run_is_recorded_once_as_cli(fresh_lab: lab.LabConfig, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _env(tmp_path, home)
    proc = subprocess.run([*runbook_command(), "run", "database_switchover", "-i", str(lab_inventory(fresh_lab)),
                           "-e", "candidate=pg-b", "--yes", "--run-id", "cli-run"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=dict(os.environ, PATH=venv_path(), **env),
                          timeout=CLI_HANG_GUARD, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = _trail(home)
    assert {record["run_id"] for record in records} == {"cli-run"}  # the callback stayed quiet: no second run id
    assert [record["kind"] for record in records].count("run_start") == 1
    assert [record["kind"] for record in records].count("run_end") == 1
    assert {record["entry_point"] for record in records} == {"cli"}
    assert any(record["kind"] == "step" and record["action"] == "erlmcp.dr.pg_promote" for record in records)
    verify = _verify(env)
    assert verify.returncode == 0 and "chain intact" in verify.stdout, verify.stdout + verify.stderr
