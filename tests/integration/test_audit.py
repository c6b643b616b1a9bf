"""The audit trail under two real runs at once: two `runbook run` processes (localhost runbooks, no lock between
them) append to the same trail; every record of both lands whole, in one chain that `runbook audit verify`
accepts, and `runbook audit show --target` finds each run's change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from runbook_helpers import CLI_HANG_GUARD, runbook_command, venv_path

RUNBOOK = """---
- name: Write a marker
  hosts: all
  gather_facts: false
  vars:
    dr: "{{ ansible_facts['dr'] }}"  # runbook_params' fact as a variable, as the runbooks name it
    runbook:
      title: Write a marker
      summary: Writes a marker file on each host.
      confirm: true
      parameters:
        path: {type: str, required: true, description: The marker file.}
        token: {type: str, no_log: true, description: A secret that must not reach the trail.}
  tasks:
    - name: Resolve the runbook's parameters
      erlmcp.dr.runbook_params:
    - name: Write the marker
      ansible.builtin.copy:
        dest: "{{ dr.path }}-{{ inventory_hostname }}"
        content: "marker\\n"
        mode: "0600"
"""
SECRET = "audit-secret-7f3a"


def test_two_concurrent_runs_both_land_intact(tmp_path: Path) -> None:
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "marker.yml").write_text(RUNBOOK)
    home = tmp_path / "home"
    env = dict(os.environ, PATH=venv_path(), ERLMCP_DR_HOME=str(home), ERLMCP_DR_PLAYBOOKS=str(books))
    procs = {}
    for name in ("east", "west"):
        hosts = tmp_path / f"{name}.ini"
        hosts.write_text("".join(f"{name}-{n} ansible_connection=local ansible_python_interpreter={sys.executable}\n"
                                 for n in (1,)))
        procs[name] = subprocess.Popen(
            [*runbook_command(), "run", "marker", "-y", "-i", str(hosts), "--run-id", f"run-{name}",
             "--operator", f"op-{name}", "-e", f"path={tmp_path / name}", "-e", f"token={SECRET}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=CLI_HANG_GUARD)
        assert proc.returncode == 0, f"{name}:\n{out}"

    trail = home / "audit" / "audit.jsonl"
    assert SECRET.encode() not in trail.read_bytes()
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    for name in ("east", "west"):
        mine = [r for r in records if r["run_id"] == f"run-{name}"]
        assert [r["kind"] for r in mine] == ["run_start", "step", "run_end"], mine
        assert [r["target"] for r in mine if r["kind"] == "step"] == [f"{name}-1"]
        assert mine[0]["parameters"]["token"] == "********"
        assert {r["who"]["operator"] for r in mine} == {f"op-{name}"}
        assert mine[-1]["targets"] == [f"{name}-1"]

    verify = subprocess.run([*runbook_command(), "audit", "verify"], capture_output=True, text=True, env=env,
                            timeout=CLI_HANG_GUARD, check=False)
    assert verify.returncode == 0 and "6 record(s), chain intact" in verify.stdout, verify.stdout + verify.stderr
    show = subprocess.run([*runbook_command(), "audit", "show", "--target", "west-1", "--json"], capture_output=True,
                          text=True, env=env, timeout=CLI_HANG_GUARD, check=False)
    shown = json.loads(show.stdout)
    assert [(r["kind"], r.get("target")) for r in shown] == [("run_start", None), ("step", "west-1"),
                                                             ("run_end", None)]
