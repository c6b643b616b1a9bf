"""Stopping `runbook` stops its run: kill -9 leaves no ansible-playbook behind (issue 5 row 8), SIGTERM
ends the child and still writes the run folder, and `runbook report` of a killed run says it was
interrupted and at which step (row 11); the next run removes the killed run's private data dir.

Real processes on localhost (no lab needed): the `runbook` console script, ansible-runner,
ansible-playbook and its workers, all watched through /proc. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from runbook_helpers import VENV_BIN, files_containing, runbook_command

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks" / "controller"
HOLD_TASK = "Hold the run open"
DEADLINE = 60  # a hang guard, never a timing assertion


@pytest.fixture
def local(tmp_path, monkeypatch) -> Iterator[dict[str, str]]:
    """Environment of a `runbook` run on localhost from the fixture playbooks, with its own state home."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    env = dict(os.environ, ERLMCP_DR_HOME=str(tmp_path / "home"), ERLMCP_DR_PLAYBOOKS=str(FIXTURES),
               PATH=os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]))
    monkeypatch.setenv("ERLMCP_DR_HOME", env["ERLMCP_DR_HOME"])
    yield {"inventory": str(inventory), **env}


def _start(local: dict[str, str], run_id: str, tmp_path: Path) -> subprocess.Popen:
    out = open(tmp_path / f"{run_id}.out", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen([*runbook_command(), "run", "long_wait", "-i", local["inventory"], "--run-id", run_id],
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=local)


def _run_dir(local: dict[str, str], run_id: str) -> Path:
    return Path(local["ERLMCP_DR_HOME"]) / "runs" / run_id


def _holding(local: dict[str, str], run_id: str) -> bool:
    events = _run_dir(local, run_id) / "artifacts" / run_id / "job_events"
    for path in events.glob("*.json") if events.is_dir() else []:
        try:
            event = json.loads(path.read_text())
        except (ValueError, FileNotFoundError):  # being written, or a partial file renamed meanwhile
            continue
        if event.get("event") == "runner_on_start" and event["event_data"].get("task") == HOLD_TASK:
            return True
    return False


def _processes() -> dict[int, tuple[str, int, str]]:
    """pid -> (state, process group, command line) of every live process (zombies have finished)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat[0] != "Z":
            found[int(entry.name)] = (stat[0], int(stat[2]), cmdline)
    return found


def _of_run(run_id: str, groups: set[int]) -> dict[int, str]:
    """The live processes of a run: its command lines name the run id, or they sit in its process groups."""
    return {pid: cmd for pid, (_state, group, cmd) in _processes().items()
            if pid != os.getpid() and (run_id in cmd or group in groups)}


def _wait_holding(proc: subprocess.Popen, local: dict[str, str], run_id: str, tmp_path: Path) -> set[int]:
    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / f"{run_id}.out").read_text()
        return _holding(local, run_id)

    wait_for(ready, DEADLINE, interval=0.2, what=f"run {run_id} at its long step")
    procs = {pid: info for pid, info in _processes().items() if run_id in info[2]}
    assert any("ansible-playbook" in cmd for _state, _group, cmd in procs.values()), procs
    return {group for _state, group, _cmd in procs.values()} - {os.getpgrp()}


def _wait_gone(run_id: str, groups: set[int]) -> None:
    try:
        wait_for(lambda: not _of_run(run_id, groups), DEADLINE, interval=0.2, what=f"no process of run {run_id}")
    except Exception as exc:
        raise AssertionError(f"processes of run {run_id} survived: {_of_run(run_id, groups)}") from exc


def warm_processes(run_id: str) -> dict[int, str]:
    """The run's processes forked by the warm zygote (ansible-playbook and its workers: their command line says so)."""
    return {pid: cmd for pid, (_state, _group, cmd) in _processes().items() if "[warm run " in cmd and run_id in cmd}


@pytest.mark.parametrize("start", ["warm", "cold"])
def test_kill_9_of_runbook_leaves_no_ansible_playbook_running(local, tmp_path, start):
    """Warm (issue 19): ansible-playbook is the zygote's grandchild, not below `runbook`, and still ends with it."""
    run_id = "kill9-" + os.urandom(3).hex()
    secret = "dburl-" + os.urandom(6).hex()
    local["DATABASE_URL"] = f"postgres://dr:{secret}@db/app"
    local["ERLMCP_DR_WARM"] = "1" if start == "warm" else "0"
    proc = _start(local, run_id, tmp_path)
    groups = _wait_holding(proc, local, run_id, tmp_path)
    assert bool(warm_processes(run_id)) == (start == "warm"), _processes()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=DEADLINE)
    _wait_gone(run_id, groups)

    # the environment was never left at rest, not even by a run that could not clean up
    run_dir = _run_dir(local, run_id)
    assert files_containing(run_dir, secret.encode()) == []
    assert "DATABASE_URL" in json.loads((run_dir / "artifacts" / run_id / "command").read_text())["env"]
    assert run_dir.stat().st_mode & 0o777 == 0o700  # what ansible wrote is in a folder only its owner enters

    # the killed run's private data dir (its extra vars) is removed by the next run's start
    private = Path(local["ERLMCP_DR_HOME"]) / "private" / run_id
    assert private.is_dir()
    nxt = subprocess.run([*runbook_command(), "plan", "trusted_params", "-i", local["inventory"]],
                         capture_output=True, text=True, env=local, timeout=DEADLINE * 5, check=False)
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    assert not private.exists()
    assert list((Path(local["ERLMCP_DR_HOME"]) / "private").iterdir()) == []
    assert {path.stat().st_mode & 0o777 for path in run_dir.rglob("*") if path.is_file()} == {0o600}

    # the report says it was interrupted, and where
    report = subprocess.run([*runbook_command(), "report", run_id], capture_output=True, text=True, env=local,
                            timeout=DEADLINE, check=False)
    assert report.returncode == 0, report.stderr
    assert "INTERRUPTED" in report.stdout and "was interrupted" in report.stdout, report.stdout
    assert f"**{HOLD_TASK}** on `localhost`" in report.stdout, report.stdout
    assert "still running, or it could not start" not in report.stdout + report.stderr
    as_json = subprocess.run([*runbook_command(), "report", run_id, "--json"], capture_output=True, text=True,
                             env=local, timeout=DEADLINE, check=False)
    assert json.loads(as_json.stdout)["status"] == "interrupted"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_sigint_ends_the_child_and_writes_the_run_folder(local, tmp_path, signum):
    run_id = f"sig{int(signum)}-" + os.urandom(3).hex()
    proc = _start(local, run_id, tmp_path)
    groups = _wait_holding(proc, local, run_id, tmp_path)
    proc.send_signal(signum)
    rc = proc.wait(timeout=DEADLINE)
    _wait_gone(run_id, groups)
    assert rc == 1, (tmp_path / f"{run_id}.out").read_text()
    run_dir = _run_dir(local, run_id)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "canceled"
    assert [s["task"] for s in result["steps"]] == ["Resolve the runbook's parameters"]
    assert "CANCELED" in (run_dir / "report.md").read_text()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "canceled"
    assert not (Path(local["ERLMCP_DR_HOME"]) / "private" / run_id).exists()


def test_a_run_past_its_timeout_is_ended_whole(local, monkeypatch):
    """erlmcp_dr.run(timeout=...) ends ansible-playbook's whole tree (its workers run in sessions of their own)."""
    import erlmcp_dr

    monkeypatch.setenv("ERLMCP_DR_PLAYBOOKS", str(FIXTURES))
    run_id = "timeout-" + os.urandom(3).hex()
    groups: set[int] = set()

    def seen(step) -> None:  # the first step is done: the run's processes exist
        groups.update(group for _state, group, cmd in _processes().values() if run_id in cmd)

    result = erlmcp_dr.run("long_wait", inventory=local["inventory"], run_id=run_id, timeout=5, event_callback=seen)
    assert result.status == "timeout" and not result.succeeded
    _wait_gone(run_id, groups - {os.getpgrp()})
    assert not (Path(local["ERLMCP_DR_HOME"]) / "private" / run_id).exists()


@pytest.mark.parametrize("how", ["run ends", "kill -9"])
def test_a_daemon_the_run_started_outlives_it(local, tmp_path, how):
    """A postmaster started by `pg_ctl start` leaves the run's sessions: ending the run must not end it."""
    tag = "erlmcp-dr-it-daemon-" + os.urandom(3).hex()
    run_id = "daemon-" + os.urandom(3).hex()
    hold = "1" if how == "run ends" else "600"
    proc = subprocess.Popen([*runbook_command(), "run", "daemon", "-i", local["inventory"], "--run-id", run_id,
                             "-e", f"tag={tag}", "-e", f"hold_seconds={hold}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=local)
    daemons: list[int] = []
    try:
        if how == "kill -9":
            groups = _wait_holding(proc, local, run_id, tmp_path)
            proc.send_signal(signal.SIGKILL)
        else:
            groups = set()
        assert proc.wait(timeout=DEADLINE * 5) == (-signal.SIGKILL if how == "kill -9" else 0)
        _wait_gone(run_id, groups)
        daemons = [pid for pid, (_state, _group, cmd) in _processes().items() if tag in cmd]
        assert len(daemons) == 1, f"the daemon did not survive the run ({how})"
    finally:
        for pid in daemons or [pid for pid, info in _processes().items() if tag in info[2]]:
            os.kill(pid, signal.SIGKILL)


def test_a_killed_runs_leaked_secret_is_scrubbed_before_its_report_shows(local, tmp_path):
    """A normal end scrubs a no_log value a task printed; a killed run cannot, so the next run's start (or
    `runbook report`) does, from the killed run's extra vars, before removing them."""
    secret = "tok-" + os.urandom(8).hex()
    run_id = "leak-" + os.urandom(3).hex()
    out = open(tmp_path / f"{run_id}.out", "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([*runbook_command(), "run", "leaky_wait", "-i", local["inventory"], "--run-id", run_id,
                             "-e", f"api_token={secret}"], stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, env=local)
    groups = _wait_holding(proc, local, run_id, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=DEADLINE)
    _wait_gone(run_id, groups)
    run_dir = _run_dir(local, run_id)
    assert files_containing(run_dir, secret.encode()), "the fixture's leak did not happen: nothing to prove"

    report = subprocess.run([*runbook_command(), "report", run_id], capture_output=True, text=True, env=local,
                            timeout=DEADLINE, check=False)
    assert report.returncode == 0, report.stdout + report.stderr
    assert secret not in report.stdout + report.stderr
    assert "token is ********" in report.stdout and "INTERRUPTED" in report.stdout
    assert files_containing(run_dir, secret.encode()) == []
    assert not (Path(local["ERLMCP_DR_HOME"]) / "private" / run_id).exists()
