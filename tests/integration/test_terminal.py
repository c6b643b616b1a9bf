"""`runbook run` as a person sees it: through a pseudo-terminal (pexpect), answering the confirmation prompt.

On the real lab: the plan (a check-mode run's summary: what would be fenced and promoted) comes BEFORE the
question; "no" changes nothing; "yes" switches over, showing the running step and a readable summary, and
leaves its audit records (with the facts the modules returned) and report.html. On a localhost runbook:
NO_COLOR (and a colour terminal without it)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect
import pytest
from runbook_helpers import (
    CLI_HANG_GUARD,
    inventory_path,
    primary_on,
    runbook_command,
    topology,
    venv_path,
    wait_topology,
)

from erlmcp_dr import audit
from erlmcp_dr.lab import lifecycle as lab

PROMPT = "type 'yes' to continue: "
ESCAPE = re.compile(r"\x1b\[")

MARKER_RUNBOOK = """---
- name: Write a marker
  hosts: localhost
  gather_facts: false
  vars:
    dr: "{{ ansible_facts['dr'] }}"  # runbook_params' fact as a variable, as the runbooks name it
    runbook:
      title: Write a marker
      summary: Writes a marker file.
      confirm: true
      rto_seconds: 60
      parameters:
        path: {type: str, required: true, description: The marker file.}
  tasks:
    - name: Resolve the runbook's parameters
      erlmcp.dr.runbook_params:
    - name: Write the marker
      ansible.builtin.copy:
        dest: "{{ dr.path }}"
        content: "marker\\n"
        mode: "0600"
"""


def _spawn(args: list[str], env_extra: dict[str, str] | None = None) -> pexpect.spawn:
    env = dict(os.environ, PATH=venv_path(), TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    env.update(env_extra or {})
    command = runbook_command()
    return pexpect.spawn(command[0], [*command[1:], *args], env=env, encoding="utf-8", timeout=CLI_HANG_GUARD,
                         dimensions=(50, 140))


def _finish(child: pexpect.spawn) -> str:
    child.expect(pexpect.EOF)
    child.close()
    return child.before


def test_no_leaves_the_lab_as_it_was_and_yes_switches_over(fresh_lab: lab.LabConfig, home: Path) -> None:
    inventory = str(inventory_path(fresh_lab))
    args = ["run", "database_switchover", "-i", inventory, "-e", "candidate=pg-c", "--operator", "bob"]
    before = topology(fresh_lab)

    child = _spawn(args)
    child.expect(PROMPT)
    shown = child.before
    plan = shown[shown.index("Plan for database_switchover"):]
    assert "would fence pg-a" in plan and "would promote pg-c" in plan, shown
    child.sendline("no")
    out = _finish(child)
    assert child.exitstatus == 2 and "not confirmed" in out, out
    assert topology(fresh_lab) == before
    assert [(r["kind"], r["check"]) for r in audit.records()] == [("run_start", True), ("run_end", True)]

    child = _spawn(args)
    child.expect(PROMPT)
    child.sendline("yes")
    child.expect(r"\.\. .+ on \S+\s+\d+s")  # the running step and its elapsed time, while it runs
    out = _finish(child)
    assert child.exitstatus == 0, out
    assert "Validating arguments against arg spec" not in out and "Check the runbook's parameters" not in out
    block = out[out.index("-" * 40):]
    assert "what was done" in block and "promoted pg-c" in block and ESCAPE.search(block), block
    wait_topology(fresh_lab, {"pg-c": primary_on(2)}, "pg-c promoted")

    live = [r for r in audit.records() if not r["check"]]
    assert live[0]["kind"] == "run_start" and live[-1]["kind"] == "run_end" and live[-1]["result"] == "successful"
    promote = [r for r in live if r["kind"] == "step" and r["action"] == "erlmcp.dr.pg_promote"]
    assert len(promote) == 1 and promote[0]["facts"].get("promoted") is True, promote
    assert {r["who"]["operator"] for r in live} == {"bob"}
    fence = [r for r in audit.select(live, target="pg-a") if r["kind"] == "step"]
    # the step that fences pg-a (its fence_host) and promotes pg-c, with the fence's and the promotion's before/after
    assert any(r["action"] == "erlmcp.dr.pg_promote" and r["before"][0] == {"fenced": False} for r in fence), fence
    assert {"localhost", "pg-a"} <= set(live[-1]["targets"]), live[-1]
    assert audit.verify() == []
    page = (Path(home) / "runs" / live[0]["run_id"] / "report.html").read_text()
    assert 'id="point-of-no-return"' in page and "promote the candidate" in page


@pytest.fixture
def marker_runbook(tmp_path: Path, home: Path) -> dict[str, str]:
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "marker.yml").write_text(MARKER_RUNBOOK)
    hosts = tmp_path / "hosts.ini"
    hosts.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    return {"ERLMCP_DR_PLAYBOOKS": str(books), "inventory": str(hosts)}


def test_no_color_means_no_escape_sequence(marker_runbook: dict[str, str], tmp_path: Path) -> None:
    """(With colour, the lab test above sees SGR escapes in the summary block.)"""
    target = tmp_path / "marker"
    env = {"ERLMCP_DR_PLAYBOOKS": marker_runbook["ERLMCP_DR_PLAYBOOKS"], "NO_COLOR": "1"}
    child = _spawn(["run", "marker", "-i", marker_runbook["inventory"], "-e", f"path={target}"], env)
    child.expect(PROMPT)
    before = child.before
    assert "would change: Write the marker on localhost" in before, before
    assert not target.exists()
    child.sendline("yes")
    out = before + _finish(child)
    assert child.exitstatus == 0, out
    assert target.read_text() == "marker\n"
    assert "\x1b" not in out, out
    assert "changed localhost      Write the marker" in out and " OK  marker" in out, out
