"""A real ansible-runner run of the fixture runbooks on localhost (connection local)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import pytest

import erlmcp_dr
from erlmcp_dr import guard, runner, timeline
from erlmcp_dr.errors import ParameterError
from erlmcp_dr.result import RunResult

SECRET = "tok-5f0c8e2a-never-written"


def _files(directory: Path):
    return [path for path in directory.rglob("*") if path.is_file()]


def test_successful_run_records_timeline_facts_and_run_folder(home, inventory):
    seen = []
    result = erlmcp_dr.run("local_smoke", inventory=inventory, extravars={"greeting": "hi", "repeat": "2"},
                           event_callback=seen.append)

    assert result.succeeded, result.error
    assert (result.status, result.rc, result.check) == ("successful", 0, False)
    assert [step.task for step in result.steps] == [
        "Validate the runbook's parameters",
        "Say the greeting",
        "Use the secret without showing it",
        "Run a command (skipped in check mode)",
        "Inside the block",
        "Publish the run's facts",
        "Fail on request",
    ]
    assert seen == result.steps  # the callback saw each step as it finished
    by_task = {step.task: step for step in result.steps}
    assert by_task["Say the greeting"].message == "hi x2"
    assert by_task["Say the greeting"].action == "ansible.builtin.debug"
    assert by_task["Say the greeting"].host == "localhost"
    assert by_task["Run a command (skipped in check mode)"].changed
    assert by_task["Fail on request"].skipped
    assert all(step.start and step.end and step.duration is not None for step in result.steps)
    assert result.facts == {"summary": {"greeting": "hi", "check_mode": False}, "details": {"mode": "safe"}}
    assert result.stats["ok"] == {"localhost": 6}
    assert result.extravars == {"greeting": "hi", "repeat": 2}

    run_dir = Path(result.run_dir)
    assert run_dir == home / "runs" / result.run_id
    assert RunResult.load(run_dir) == result
    assert "# Local smoke test: succeeded" in (run_dir / "report.md").read_text()
    artifacts = run_dir / "artifacts" / result.run_id
    assert (artifacts / "rc").read_text().strip() == "0"
    assert list((artifacts / "job_events").glob("*.json"))
    # the private data dir (extra vars on disk) is gone
    assert not (home / "private" / result.run_id).exists()
    assert not list(Path(tempfile.gettempdir()).glob(f"erlmcp-dr-{result.run_id}-*"))


def test_check_mode_is_passed_to_ansible(home, inventory):
    result = erlmcp_dr.run("local_smoke", inventory=inventory, check=True)
    assert result.succeeded and result.check
    command = json.loads((Path(result.run_dir) / "artifacts" / result.run_id / "command").read_text())
    assert "--check" in command["command"] and "--diff" in command["command"]
    by_task = {step.task: step for step in result.steps}
    assert by_task["Run a command (skipped in check mode)"].skipped
    assert result.facts["summary"]["check_mode"] is True
    assert "a plan: nothing was changed" in (Path(result.run_dir) / "report.md").read_text()


def test_failing_task_fails_the_run_with_its_message(home, inventory):
    result = erlmcp_dr.run("local_smoke", inventory=inventory, extravars={"fail_step": True})
    assert result.status == "failed"
    assert result.rc != 0
    assert not result.succeeded
    failing = result.failing_step
    assert failing.task == "Fail on request"
    assert failing.failed and failing.host == "localhost"
    assert failing.message == "Failed on purpose because fail_step=true; run again with -e fail_step=false."
    text = (Path(result.run_dir) / "report.md").read_text()
    assert "# Local smoke test: FAILED" in text
    assert "What to do next" in text and "fail_step=false" in text


def test_secret_parameter_is_never_written_into_the_run_folder(home, inventory, caplog):
    caplog.set_level(logging.WARNING, logger="erlmcp_dr")
    result = erlmcp_dr.run("local_smoke", inventory=inventory, extravars={"api_token": SECRET})
    assert result.succeeded
    assert result.extravars["api_token"] == "********"
    files = _files(Path(result.run_dir))
    assert len(files) > 10
    assert not [path for path in files if SECRET.encode() in path.read_bytes()]
    assert "no_log parameter" not in caplog.text  # nothing had to be scrubbed: the run never wrote it


def test_a_leaked_secret_is_scrubbed_and_reported(home, inventory, caplog):
    caplog.set_level(logging.WARNING, logger="erlmcp_dr")
    result = erlmcp_dr.run("leaky", inventory=inventory, extravars={"api_token": SECRET})
    assert result.succeeded
    assert not [path for path in _files(Path(result.run_dir)) if SECRET.encode() in path.read_bytes()]
    assert result.steps[0].message == "token is ********"
    assert "no_log parameter (api_token)" in caplog.text
    assert SECRET not in caplog.text


def test_a_busy_run_lock_step_names_its_holder():
    holder = {"run_id": "r-1", "runbook": "database_switchover", "pid": 4242, "host": "ctl-1",
              "started_at": "2026-11-23T15:01:02Z"}
    busy = timeline.make_step("failed", {"task": "Take the run lock", "host": "localhost",
                                       "resolved_action": "erlmcp.dr.run_lock",
                                       "res": {"failed": True, "busy": True, "holder": holder, "msg": "held"}})
    other = timeline.make_step("failed", {"task": "Fail", "host": "localhost", "resolved_action": "erlmcp.dr.pg_fence",
                                        "res": {"failed": True, "msg": "no"}})
    assert runner.busy_holder([other, busy]) == holder
    assert runner.busy_holder([other]) is None
    free = timeline.make_step("ok", {"task": "Take the run lock", "host": "localhost",
                                   "resolved_action": "erlmcp.dr.run_lock", "res": {"busy": False}})
    assert runner.busy_holder([free]) is None


def test_run_folder_is_private_and_keeps_no_environment(home, inventory, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://dr:pw-3c9e1f@db/app")
    monkeypatch.setenv("SSHPASS", "sshpass-77a0d2")
    monkeypatch.setenv("APP_DB_PASS", "dbpass-52be90")
    result = erlmcp_dr.run("local_smoke", inventory=inventory)
    assert result.succeeded, result.error
    run_dir = Path(result.run_dir)
    modes = {path.relative_to(run_dir).as_posix(): path.stat().st_mode & 0o777
             for path in [run_dir, *run_dir.rglob("*")]}
    assert {mode for path, mode in modes.items() if (run_dir / path).is_dir()} == {0o700}, modes
    assert {mode for path, mode in modes.items() if (run_dir / path).is_file()} == {0o600}, modes
    assert (home / "runs").stat().st_mode & 0o777 == 0o700
    for value in ("pw-3c9e1f", "sshpass-77a0d2", "dbpass-52be90"):
        assert not [path for path in _files(run_dir) if value.encode() in path.read_bytes()], value
    command = json.loads((run_dir / "artifacts" / result.run_id / "command").read_text())
    assert "DATABASE_URL" in command["env"] and "SSHPASS" in command["env"]  # the names only
    assert "ansible-playbook" in command["command"]
    marker = json.loads((run_dir / "run.json").read_text())
    assert marker["status"] == "successful" and marker["pid"] > 0


def test_parameters_reach_the_playbook_as_data(home, inventory, tmp_path):
    touched = tmp_path / "touched"
    value = "{{ lookup('pipe', 'touch " + str(touched) + "') }}{% if true %}x{% endif %}{# c #}"
    result = erlmcp_dr.run("local_smoke", inventory=inventory, extravars={"greeting": value,
                                                                        "hosts_to_check": ["{{ 7 * 6 }}"]})
    assert result.succeeded, result.error
    assert not touched.exists()
    assert {step.task: step for step in result.steps}["Say the greeting"].message == f"{value} x1"
    assert not (home / "private" / result.run_id).exists()  # the extra vars file is gone with the run


def test_a_killed_runs_private_dir_is_removed_by_the_next_run(home, inventory):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = home / "private" / "killed-run"
    live = home / "private" / "running-run"
    for path, pid in ((stale, dead.pid), (live, os.getpid())):
        (path / "env").mkdir(parents=True)
        (path / "env" / "extravars").write_text("pg_login_password: s3cret\n")
        (path / "owner.json").write_text(json.dumps({"pid": pid, "pid_start_time": guard.process_start_time(pid)}))
    result = erlmcp_dr.run("local_smoke", inventory=inventory, check=True)
    assert result.succeeded, result.error
    assert not stale.exists()
    assert live.exists()  # its run is still going
    assert sorted(path.name for path in (home / "private").iterdir()) == ["running-run"]


def test_bad_parameters_stop_before_anything_runs(home, inventory):
    with pytest.raises(ParameterError) as caught:
        erlmcp_dr.run("local_smoke", inventory=inventory, extravars={"repeat": "many"})
    assert caught.value.parameter == "repeat"
    with pytest.raises(ParameterError) as caught:
        erlmcp_dr.run("local_smoke", inventory=inventory.parent / "missing.ini")
    assert caught.value.parameter == "inventory"
    assert not (home / "runs").exists()


def test_run_takes_a_prepared_config_or_a_name_never_both(home, inventory):
    from erlmcp_dr.errors import ParameterError

    with pytest.raises(ParameterError, match="name or a prepared config"):
        runner.run()
    config = runner.RunConfig.prepare("local_smoke", inventory=inventory)
    with pytest.raises(ParameterError, match="not both"):
        runner.run("local_smoke", config=config)


def test_a_busy_start_of_a_database_runbook_names_its_holder():
    """erlmcp.dr.pg_begin takes the lock inside the database runbooks' one-task start and fails itself when busy."""
    holder = {"run_id": "r-2", "runbook": "database_failover", "pid": 4343, "host": "ctl-1"}
    busy = timeline.make_step("failed", {"task": "Read every database node's live role", "host": "localhost",
                                       "resolved_action": "erlmcp.dr.pg_begin",
                                       "res": {"failed": True, "busy": True, "holder": holder, "msg": "held"}})
    assert runner.busy_holder([busy]) == holder
    failed = timeline.make_step("failed", {"task": "Read every database node's live role", "host": "localhost",
                                         "resolved_action": "erlmcp.dr.pg_begin",
                                         "res": {"failed": True, "busy": False, "msg": "pg_port is missing"}})
    assert runner.busy_holder([failed]) is None
