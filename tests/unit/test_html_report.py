"""report.html (erlmcp_dr.reporting.html_report): self-contained, one bar per step coloured by result, the point of no
return marked where the run passed it, RTO against the target; and the catalog's point_of_no_return field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from erlmcp_dr import catalog
from erlmcp_dr.errors import RunbookError
from erlmcp_dr.reporting import html_report
from erlmcp_dr.result import RunResult, Step


def _step(task: str, second: float, duration: float, **kwargs) -> Step:
    start = f"2026-11-25T14:00:{second:06.3f}+00:00"
    end = f"2026-11-25T14:00:{second + duration:06.3f}+00:00"
    return Step(task=task, host=kwargs.pop("host", "localhost"), start=start, end=end, duration=duration, **kwargs)


def _result(**kwargs) -> RunResult:
    steps = kwargs.pop("steps") if "steps" in kwargs else [
        _step("Check the runbook's parameters", 1, 0.1, action="erlmcp.dr.runbook_params"),
        _step("Validating arguments against arg spec 'main'", 1.2, 0.1,
              action="ansible.builtin.validate_argument_spec"),
        _step("Fence the old primary", 2, 3, action="erlmcp.dr.pg_fence", changed=True, host="pg-a"),
        _step("Promote the candidate <b>now</b>", 5, 2, action="erlmcp.dr.pg_promote", changed=True),
        _step("Repoint pg-b", 7, 1, skipped=True),
        _step("Check the end state", 8, 1, failed=True, message="pg-b is not streaming"),
    ]
    values = dict(run_id="r1", runbook="database_failover", status="failed", rc=2, check=False,
                  started_at="2026-11-25T14:00:00Z", ended_at="2026-11-25T14:00:10Z", duration_seconds=10.0,
                  inventory="inv", steps=steps, title="Database failover", rto_target_seconds=300, run_dir="/r",
                  point_of_no_return="erlmcp.dr.pg_promote", rpo_target_seconds=1,
                  facts={"summary": {"did": ["fenced pg-a by stop", "promoted pg-c: timeline 1 -> 2"],
                                     "details": {"new_primary": "pg-c"}}})
    values.update(kwargs)
    return RunResult(**values)


def _bars(page: str) -> list[str]:
    return re.findall(r'<rect class="bar (\w+)"', page)


def test_one_bar_per_step_coloured_by_result_internal_steps_left_out() -> None:
    page = html_report.render(_result())
    assert _bars(page) == ["changed", "changed", "skipped", "failed"]
    assert html_report.COLOURS["failed"] in page and html_report.COLOURS["changed"] in page
    assert "2 internal step(s)" in page


def test_self_contained_and_escaped() -> None:
    page = html_report.render(_result())
    assert "<b>now</b>" not in page and "&lt;b&gt;now&lt;/b&gt;" in page
    assert "<script" not in page
    external = re.findall(r'(?:src|href)\s*=\s*"(?!data:)([^"]*)"', page)
    assert external == [], external
    assert "default-src 'none'" in page


def test_point_of_no_return_is_the_action_the_runbook_names() -> None:
    result = _result()
    bars = html_report.timeline_bars(result)
    marker = html_report.point_of_no_return(result, bars)
    assert marker is not None and marker.step.action == "erlmcp.dr.pg_promote" and marker.start == 5.0
    assert 'id="point-of-no-return"' in html_report.render(result)


def test_a_runbook_that_declares_no_point_of_no_return_has_none_even_when_it_promotes() -> None:
    """The marker comes from the runbook's metadata only: no action name is hard-coded (it used to be pg_promote)."""
    result = _result(point_of_no_return=None)
    assert html_report.point_of_no_return(result, html_report.timeline_bars(result)) is None
    page = html_report.render(result)
    assert 'id="point-of-no-return"' not in page and "declares no point of no return" in page


def test_point_of_no_return_from_the_runbook_and_not_reached() -> None:
    named = _result(point_of_no_return="Fence the old primary")
    assert html_report.point_of_no_return(named, html_report.timeline_bars(named)).step.host == "pg-a"
    early = _result(steps=[_step("Gate", 1, 1, failed=True, message="lag over budget")])
    page = html_report.render(early)
    assert 'id="point-of-no-return"' not in page and "not reached" in page


def test_rto_against_the_target() -> None:
    within = html_report.render(_result(status="successful", rc=0))
    assert "within the RTO target of 300 s" in within and 'id="rto-target"' in within
    over = html_report.render(_result(status="successful", rc=0, duration_seconds=400.0))
    assert "OVER the RTO target" in over and "#c62828" in over.split('id="rto-achieved"')[1][:200]
    none = html_report.render(_result(rto_target_seconds=None))
    assert "sets no RTO target" in none


def test_failure_says_what_and_next() -> None:
    page = html_report.render(_result())
    assert "What went wrong" in page and "pg-b is not streaming" in page and "What to do next" in page


def test_no_steps() -> None:
    page = html_report.render(_result(steps=[], status="failed", error="syntax error"))
    assert "No step ran" in page and "syntax error" in page


def test_write_is_private(tmp_path: Path) -> None:
    path = html_report.write(_result(run_dir=str(tmp_path)))
    assert path == tmp_path / "report.html" and oct(path.stat().st_mode & 0o777) == "0o600"


def _playbook(tmp_path: Path, marker: str) -> Path:
    path = tmp_path / "marked.yml"
    path.write_text("---\n- name: Marked\n  hosts: localhost\n  vars:\n    runbook:\n      title: Marked\n"
                    f"      point_of_no_return: {marker}\n  tasks: []\n")
    return path


def test_catalog_reads_point_of_no_return(tmp_path: Path) -> None:
    runbook = catalog.parse_playbook(_playbook(tmp_path, "erlmcp.dr.pg_promote"))
    assert runbook is not None and runbook.point_of_no_return == "erlmcp.dr.pg_promote"
    with pytest.raises(RunbookError, match="point_of_no_return must be a task name or an action"):
        catalog.parse_playbook(_playbook(tmp_path, "[1, 2]"))


def _envelope(**overrides) -> dict:
    summary = {"schema": 1, "runbook": "database_failover", "action": "promote", "reason": "pg-a is down",
               "completed": True, "check_mode": False, "did": ["promoted pg-c: timeline 1 -> 2"],
               "end_state": {"ok": True, "problems": []}, "lock": {"key": "postgres:7"}, "rollback": [],
               "point_of_no_return_passed": True, "served": {"before": "pg-a", "after": "pg-c"},
               "recovery_point": {"lost_bytes": 0, "lost_seconds": None, "target_seconds": 1},
               "details": {"new_primary": "pg-c", "timeline_after": 2}}
    summary.update(overrides)
    return summary


def test_report_shows_what_a_ticket_needs_who_ran_it_the_recovery_point_and_what_served_before_and_after() -> None:
    page = html_report.render(_result(status="successful", rc=0, operator="alice", os_user="sre1",
                                      facts={"summary": _envelope()}))
    assert "alice (--operator), as OS user sre1" in page
    assert 'id="rpo"' in page and "at most 0 bytes of WAL" in page and "target 1 s" in page
    served = page.split('<table class="served">')[1].split("</table>")[0]
    assert "Served before</th><td>pg-a" in served and "Served after</th><td>pg-c" in served
    assert "Point of no return</th><td>passed" in served
    summary = page.split('<table class="summary">')[1].split("</table>")[0]
    assert "postgres:7" in summary and "timeline_after" in summary


def test_report_names_the_os_user_when_no_operator_is_given_and_a_restores_data_loss_against_the_target() -> None:
    restore = _envelope(runbook="redis_restore", served=None,
                        recovery_point={"lost_bytes": None, "lost_seconds": 7200, "target_seconds": 3600})
    page = html_report.render(_result(status="successful", rc=0, os_user="sre1", rpo_target_seconds=3600,
                                      facts={"summary": restore}))
    assert "OS user sre1 (no --operator given)" in page
    assert "the writes of the last 7200 s (the backup&#x27;s age) - OVER the target" in page
    assert '<table class="served">' in page  # the point of no return row stays, with no served rows
    quiet = html_report.render(_result(status="successful", rc=0, facts={"summary": _envelope(recovery_point=None)}))
    assert "This run gave up no data (target 1 s)" in quiet


def test_a_summary_published_before_the_envelope_still_shows_its_facts() -> None:
    """An older run's result.json (no `details`: its facts at the top) re-rendered by `runbook report --html`."""
    page = html_report.render(_result(facts={"summary": {"did": ["promoted pg-c"], "new_primary": "pg-c"}}))
    summary = page.split('<table class="summary">')[1].split("</table>")[0]
    assert "new_primary" in summary and "pg-c" in summary
