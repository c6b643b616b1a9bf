"""The terminal display (erlmcp_dr.terminal): when colour is used, the plan's lines, the outcome block and
the live progress (on an in-memory stream; the pseudo-terminal tests are tests/integration/test_terminal.py)."""

from __future__ import annotations

import io

from erlmcp_dr import terminal
from erlmcp_dr.result import RunResult, Step


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _result(summary: dict, **kwargs) -> RunResult:
    values = dict(run_id="r1", runbook="database_failover", status="successful", rc=0, check=True,
                  started_at="", ended_at="", duration_seconds=3.0, inventory="inv", facts={"summary": summary},
                  run_dir="/runs/r1")
    values.update(kwargs)
    return RunResult(**values)


def test_colour_only_on_a_tty_without_no_color() -> None:
    assert terminal.colour_wanted(FakeTty(), {"TERM": "xterm"})
    assert not terminal.colour_wanted(FakeTty(), {"TERM": "xterm", "NO_COLOR": "1"})
    assert terminal.colour_wanted(FakeTty(), {"TERM": "xterm", "NO_COLOR": ""})  # no-color.org: empty is unset
    assert not terminal.colour_wanted(FakeTty(), {"TERM": "dumb"})
    assert not terminal.colour_wanted(io.StringIO(), {"TERM": "xterm"})


def test_plan_lines_say_what_would_change_with_the_lag() -> None:
    plan = _result({"did": ["would fence pg-a by stop", "would promote pg-c"],
                    "details": {"new_primary": "pg-c", "lag_bytes_at_gate": 0, "warnings": ["pg-b is paused"]}})
    assert terminal.plan_lines(plan) == ["would fence pg-a by stop", "would promote pg-c (lag 0 B)",
                                         "warning: pg-b is paused"]
    assert terminal.plan_lines(_result({"did": ["nothing was changed"]})) == [
        "nothing to change: the end state already holds"]
    failed = _result({}, status="failed", rc=2,
                     steps=[Step(task="Gate", host="localhost", failed=True, message="lag 9 MB over budget")])
    assert terminal.plan_lines(failed) == ["the plan FAILED: lag 9 MB over budget"]
    bare = _result({}, steps=[Step(task="Write the marker", host="h1", changed=True)])
    assert terminal.plan_lines(bare) == ["would change: Write the marker on h1"]


def test_render_plan_and_summary_without_colour_hold_no_escape() -> None:
    plan = _result({"did": ["would promote pg-c"], "details": {"new_primary": "pg-c", "lag_bytes_at_gate": 0}})
    plain = terminal.Style(False)
    text = terminal.render_plan(plan, "inv", plain) + terminal.render_summary(plan, plain)
    assert "\x1b" not in text
    assert "Plan for database_failover against inv" in text and "  - would promote pg-c (lag 0 B)" in text
    coloured = terminal.render_summary(plan, terminal.Style(True))
    assert "\x1b[" in coloured


def test_summary_block_is_readable() -> None:
    done = _result({"did": ["fenced pg-a by stop", "promoted pg-c: timeline 1 -> 2"],
                    "details": {"new_primary": "pg-c", "streaming": ["pg-b", "pg-a"]},
                    "end_state": {"ok": True, "problems": []}}, check=False, rto_target_seconds=300,
                   steps=[Step(task="a", host="h", changed=True), Step(task="b", host="h")])
    text = terminal.render_summary(done, terminal.Style(False))
    lines = text.splitlines()
    assert " OK  database_failover: 3.0 s: within the RTO target of 300 s" in lines
    assert "    - promoted pg-c: timeline 1 -> 2" in lines
    assert any(line.split() == ["new", "primary", "pg-c"] for line in lines)
    assert any(line.split() == ["streaming", "pg-b,", "pg-a"] for line in lines)
    assert any(line.split() == ["end", "state", "ok", "True"] for line in lines), lines
    assert "  steps  2 (1 ok, 1 changed)" in lines
    failed = _result({}, check=False, status="failed", rc=2,
                     steps=[Step(task="Promote", host="localhost", failed=True, message="pg-c is behind")])
    text = terminal.render_summary(failed, terminal.Style(False))
    assert " FAILED  database_failover" in text and "failed at: Promote on localhost" in text and "next:" in text


def test_progress_shows_steps_and_hides_internal_ones() -> None:
    stream = io.StringIO()
    progress = terminal.Progress(stream, colour=False)
    try:
        progress.started("Validating arguments against arg spec 'main'", "localhost", "")
        progress.started("Check the runbook's parameters", "localhost", "erlmcp.dr.runbook_params")
        assert progress.status_line() == ""
        progress.started("Promote", "pg-c", "erlmcp.dr.pg_promote")
        assert progress.status_line().startswith("  .. Promote on pg-c  ")
        progress.finished(Step(task="Check the runbook's parameters", host="localhost",
                               action="erlmcp.dr.runbook_params"))
        progress.finished(Step(task="Promote", host="pg-c", action="erlmcp.dr.pg_promote", changed=True,
                               duration=1.5))
        progress.finished(Step(task="Check the inventory", host="localhost", action="erlmcp.dr.inventory_contract",
                               failed=True, message="pg_port missing"))
    finally:
        progress.close()
    out = stream.getvalue()
    assert "runbook_params" not in out and "Check the runbook's parameters" not in out
    assert "changed pg-c           Promote  1.5s" in out
    assert "FAILED  localhost      Check the inventory" in out and "pg_port missing" in out
    assert "\x1b" not in out
    assert not progress.thread.is_alive()
