"""RunResult round-trips through result.json; report.md and the terminal summary read well."""

from __future__ import annotations

import json
from pathlib import Path

from erlmcp_dr.reporting import report
from erlmcp_dr.result import RunResult, Step


def _result(**overrides) -> RunResult:
    values = dict(
        run_id="20261123T150102Z-database_failover-3fa2",
        runbook="database_failover",
        status="successful",
        rc=0,
        check=False,
        started_at="2026-11-23T15:01:02Z",
        ended_at="2026-11-23T15:01:14Z",
        duration_seconds=12.5,
        inventory="/srv/inventories/prod",
        extravars={"away_from": "pg-a", "login_password": "********"},
        steps=[
            Step(task="Validate the runbook's parameters", host="localhost",
                 action="ansible.builtin.validate_argument_spec", start="2026-11-23T15:01:02.1",
                 end="2026-11-23T15:01:02.2", duration=0.1, message="passed"),
            Step(task="Promote the standby", host="pg-b", action="erlmcp.dr.pg_promote", duration=2.25, changed=True,
                 message="promoted | timeline 3", data={"timeline": 3, "lsn": "0/3000060"}),
            Step(task="Skip me", host="pg-c", action="ansible.builtin.debug", skipped=True),
        ],
        facts={"promotion": {"new_primary": "pg-b"}, "summary": {"rto_seconds": 9.8, "new_primary": "pg-b"}},
        run_dir="/tmp/runs/20261123T150102Z-database_failover-3fa2",
        title="Database failover",
        rto_target_seconds=300,
        rpo_target_seconds=1,
    )
    values.update(overrides)
    return RunResult(**values)


def _failed() -> RunResult:
    failing = Step(task="Gate on replication lag", host="pg-b", action="erlmcp.dr.pg_replication", failed=True,
                   duration=0.5, message="lag 4.2 s exceeds the RPO budget of 1 s; pass -e force=true to override")
    ignored = Step(task="Best effort", host="pg-c", failed=True, ignored=True, message="meh")
    return _result(status="failed", rc=2, steps=[ignored, failing], facts={})


def test_round_trip_through_dict_and_json(tmp_path):
    result = _result()
    assert RunResult.from_dict(json.loads(result.to_json())) == result
    result.save(tmp_path)
    assert RunResult.load(tmp_path) == result
    assert json.loads((tmp_path / "result.json").read_text())["succeeded"] is True


def test_from_dict_ignores_unknown_keys():
    data = _result().to_dict() | {"added_later": 1}
    data["steps"][0]["also_new"] = True
    assert RunResult.from_dict(data) == _result()


def test_succeeded_and_failing_step():
    assert _result().succeeded
    assert not _result(rc=2).succeeded
    assert not _result(status="canceled", rc=254).succeeded
    failed = _failed()
    assert not failed.succeeded
    assert failed.failing_step.task == "Gate on replication lag"
    assert [step.status for step in failed.steps] == ["ignored", "failed"]


def test_step_status_words():
    assert Step("t", "h").status == "ok"
    assert Step("t", "h", changed=True).status == "changed"
    assert Step("t", "h", skipped=True).status == "skipped"
    assert Step("t", "h", unreachable=True).status == "unreachable"


def test_markdown_report_of_a_successful_run():
    text = report.render_markdown(_result())
    assert text.startswith("# Database failover: succeeded\n")
    assert "| Run | `20261123T150102Z-database_failover-3fa2` |" in text
    assert "| Mode | live (changes applied) |" in text
    assert "| Duration | 12.5 s: within the RTO target of 300 s |" in text
    assert "`login_password=********`" in text
    assert text.index("## Summary") < text.index("## Promotion") < text.index("## Steps")
    assert "| rto_seconds | 9.8 |" in text
    assert "| 2 | Promote the standby | pg-b | 2.25 s | changed | promoted \\| timeline 3 |" in text
    assert "What to do next" not in text


def test_markdown_report_of_a_failed_run_says_what_failed_and_what_next():
    text = report.render_markdown(_failed())
    assert text.startswith("# Database failover: FAILED\n")
    assert "**Gate on replication lag** failed on `pg-b`:" in text
    assert "> lag 4.2 s exceeds the RPO budget of 1 s; pass -e force=true to override" in text
    assert "**What to do next:** the message above says what was found" in text
    assert "Earlier failures" not in text  # an ignored failure did not stop the run


def test_earlier_failures_are_shown_in_full():
    failed = _failed()
    rescue = Step(task="Roll back the fence", host="localhost", failed=True, message="rollback failed too")
    failed.steps.append(rescue)
    text = report.render_markdown(failed)
    assert "**Roll back the fence** failed on `localhost`:" in text
    assert "Earlier failures" in text
    assert "  > lag 4.2 s exceeds the RPO budget of 1 s; pass -e force=true to override" in text
    terminal = report.render_terminal(failed)
    assert "earlier failure: Gate on replication lag on pg-b: lag 4.2 s exceeds" in terminal


def test_published_next_step_wins():
    failed = _failed()
    failed.facts = {"next_step": "run database_rejoin for pg-a"}
    assert "**What to do next:** run database_rejoin for pg-a" in report.render_markdown(failed)


def test_check_mode_and_over_target_wording():
    assert "a plan: nothing was changed" in report.render_markdown(_result(check=True))
    assert report.render_markdown(_result(check=True)).startswith("# Database failover: plan succeeded")
    assert "OVER the RTO target of 300 s" in report.duration_vs_target(_result(duration_seconds=301))
    assert report.duration_vs_target(_result(rto_target_seconds=None)) == "12.5 s"


def test_run_without_steps_shows_the_output():
    result = _result(status="failed", rc=4, steps=[], facts={}, error="ERROR! the playbook could not be found")
    text = report.render_markdown(result)
    assert "No step ran." in text
    assert "ERROR! the playbook could not be found" in text


def test_terminal_summary():
    ok = report.render_terminal(_result())
    assert ok.splitlines()[0] == "[OK] database_failover: successful in 12.5 s: within the RTO target of 300 s"
    assert "steps: 3 (1 ok, 1 changed, 1 skipped)" in ok
    assert "summary: rto_seconds=9.8, new_primary=pg-b" in ok
    assert "report: runbook report 20261123T150102Z-database_failover-3fa2" in ok
    bad = report.render_terminal(_failed())
    assert bad.splitlines()[0].startswith("[FAILED] database_failover: failed")
    assert "failed at: Gate on replication lag on pg-b" in bad
    assert "  next: " in bad


def test_progress_line_has_mark_host_task_and_duration():
    line = report.step_line(Step(task="Promote the standby", host="pg-b", changed=True, duration=2.25))
    assert line.startswith("[changed]")
    assert "pg-b" in line and "Promote the standby" in line and line.endswith("(2.25 s)")


# ---------------------------------------------------------------- a run folder without result.json


def _event(counter: int, kind: str, task: str, uuid: str, **extra) -> dict:
    data = {"task": task, "task_uuid": uuid, "host": "localhost", "resolved_action": "ansible.builtin.command",
            "res": {"changed": False}, **extra}
    return {"counter": counter, "event": kind, "created": f"2026-11-23T15:01:0{counter}Z", "event_data": data}


def _unfinished_folder(tmp_path: Path, pid: int, pid_start_time: int | None) -> Path:
    from erlmcp_dr.result import MARKER_FILE

    run_id = "20261123T150102Z-long_wait-beef"
    run_dir = tmp_path / run_id
    events = run_dir / "artifacts" / run_id / "job_events"
    events.mkdir(parents=True)
    marker = {"run_id": run_id, "runbook": "long_wait", "title": "Long wait", "status": "running", "check": False,
              "started_at": "2026-11-23T15:01:02Z", "inventory": "/srv/inv", "extravars": {"hold_seconds": 600},
              "pid": pid, "pid_start_time": pid_start_time, "host": "ctl-1"}
    (run_dir / MARKER_FILE).write_text(json.dumps(marker))
    for event in (_event(1, "runner_on_start", "Resolve the parameters", "u1"),
                  _event(2, "runner_on_ok", "Resolve the parameters", "u1"),
                  _event(3, "runner_on_start", "Hold the run open", "u2")):
        (events / f"{event['counter']}-x.json").write_text(json.dumps(event))
    return run_dir


def test_a_killed_run_is_reported_interrupted_at_its_step(tmp_path):
    gone = _dead_pid()
    result = report.unfinished_result(_unfinished_folder(tmp_path, gone, 12345))
    assert result.status == "interrupted" and not result.succeeded
    assert [step.task for step in result.steps] == ["Resolve the parameters"]
    assert "**Hold the run open** on `localhost` (started 2026-11-23T15:01:03Z, no result)" in result.error
    assert f"its process (pid {gone} on ctl-1) is gone" in result.error
    text = report.render_markdown(result)
    assert text.startswith("# Long wait: INTERRUPTED")
    assert "still running, or it could not start" not in text
    assert "converges from any state" in text and "runbook plan long_wait" in text


def test_a_run_whose_process_lives_is_reported_running(tmp_path):
    import os

    from erlmcp_dr.guard import process_start_time

    result = report.unfinished_result(_unfinished_folder(tmp_path, os.getpid(), process_start_time(os.getpid())))
    assert result.status == "running"
    assert "still going" in result.error and "**Hold the run open**" in result.error
    # the same pid with another start time is another process: the run's own process is gone
    result = report.unfinished_result(_unfinished_folder(tmp_path / "reused", os.getpid(), 1))
    assert result.status == "interrupted"


def test_a_folder_without_marker_is_not_guessed(tmp_path):
    assert report.unfinished_result(tmp_path) is None


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_killed_runs_html_report_is_drawn_from_what_it_left(tmp_path):
    from erlmcp_dr import cli

    run_dir = _unfinished_folder(tmp_path, _dead_pid(), 12345)
    page = cli._html_report(run_dir)
    assert page == run_dir / "report.html"
    text = page.read_text()
    assert "Long wait: INTERRUPTED" in text and "Hold the run open" in text and "What to do next" in text
