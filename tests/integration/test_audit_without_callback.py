"""A playbook run where the erlmcp.dr.audit_trail callback is not enabled (another ansible.cfg, an AWX project
without it) still appends to the audit trail (issue 23 row 10): erlmcp.dr.run_lock writes the start when it takes
the lock and the end when it lets it go, saying that the steps were not recorded, and the lock holder record
carries the trail's head after the start record. Through real ansible-playbook processes (tests/fixtures/lock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from runbook_helpers import CLI_HANG_GUARD, lab_inventory, runbook_command, venv_path

from erlmcp_dr import paths

PLAYBOOK = Path(__file__).resolve().parents[1] / "fixtures" / "lock" / "hold.yml"
pytestmark = pytest.mark.integration


def test_the_lock_records_start_and_end_when_no_callback_does(tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text(f"localhost ansible_connection=local ansible_python_interpreter="
                                        f"{sys.executable}\n")
    home, signal_file = tmp_path / "home", tmp_path / "taken.json"
    (tmp_path / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = false\n")  # no callbacks_enabled
    env = dict(os.environ, PATH=venv_path(), ERLMCP_DR_HOME=str(home), ERLMCP_DR_LOCK_DIR=str(tmp_path / "locks"),
               ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(paths.collections_path()))
    env.pop("ERLMCP_DR_AUDIT_WRITER", None)
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(tmp_path / "hosts.ini"),
                           str(PLAYBOOK), "-e", "lock_key=postgres:1", "-e", f"signal_file={signal_file}",
                           "-e", "lock_operator=dave"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=CLI_HANG_GUARD, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    trail = [json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()]
    assert [(record["kind"], record["entry_point"], record["runbook"]) for record in trail] == [
        ("run_start", "ansible-playbook", "hold"), ("run_end", "ansible-playbook", "hold")]  # the playbook's name
    assert trail[0]["run_id"] == trail[1]["run_id"] and trail[0]["run_id"].startswith("ansible-playbook-")
    assert trail[0]["who"]["operator"] == "dave"
    assert "enable the erlmcp.dr.audit_trail callback" in trail[0]["note"]
    holder = json.loads(signal_file.read_text())["holder"]
    assert (holder["audit_head"]["seq"], holder["audit_head"]["hash"]) == (1, trail[0]["hash"])
    verify = subprocess.run([*runbook_command(), "audit", "verify"], capture_output=True, text=True, env=env,
                            timeout=CLI_HANG_GUARD, check=False)
    assert verify.returncode == 0 and "2 record(s), chain intact" in verify.stdout, verify.stdout + verify.stderr


def test_a_runbook_without_the_callback_is_recorded_under_its_name(fresh_lab, tmp_path: Path) -> None:
    """database_switchover takes its lock inside pg_begin (a role's task): the records still name the runbook."""
    (tmp_path / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = false\n")
    home = tmp_path / "home"
    env = dict(os.environ, PATH=venv_path(), ERLMCP_DR_HOME=str(home), ERLMCP_DR_LOCK_DIR=str(tmp_path / "locks"),
               ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(paths.collections_path()))
    env.pop("ERLMCP_DR_AUDIT_WRITER", None)
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i",
                           str(lab_inventory(fresh_lab)),
                           str(paths.collection_root() / "playbooks" / "database_switchover.yml"),
                           "-e", "candidate=pg-b"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=CLI_HANG_GUARD, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    trail = [json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()]
    assert [(record["kind"], record["runbook"]) for record in trail] == [
        ("run_start", "database_switchover"), ("run_end", "database_switchover")]
    parameters = trail[0]["parameters"]
    assert parameters["candidate"] == "pg-b"
    assert parameters["pg_login_password"] == "********"  # a no_log parameter the inventory gives: masked
    from erlmcp_dr.lab import lifecycle as lab

    assert lab.LAB_PASSWORD.encode() not in (home / "audit" / "audit.jsonl").read_bytes()
