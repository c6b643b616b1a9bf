"""erlmcp.dr.run_lock through real ansible-playbook processes: one holder at a time, dead holders taken over,
check mode takes nothing. Every test has its own lock folder (ERLMCP_DR_LOCK_DIR)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402

PLAYBOOK = Path(__file__).resolve().parents[1] / "fixtures" / "lock" / "hold.yml"
KEY = "postgres:7301234567890123456"
DEADLINE = 120
pytestmark = pytest.mark.integration


class Playbook:
    """One ansible-playbook process of the fixture, in its own process group."""

    def __init__(self, tmp: Path, name: str, env: dict[str, str], *extra: str) -> None:
        self.signal_file = tmp / f"{name}.signal.json"
        self.output = tmp / f"{name}.out"
        args = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(tmp / "hosts.ini"), str(PLAYBOOK),
                "-e", f"lock_key={KEY}", "-e", f"signal_file={self.signal_file}", *extra]
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def taken(self) -> dict[str, Any] | None:
        """The run_lock result once it holds the lock."""
        try:
            return json.loads(self.signal_file.read_text())
        except (OSError, ValueError):
            return None

    def wait(self) -> int:
        return self.proc.wait(timeout=DEADLINE)

    def text(self) -> str:
        """The output with every run of whitespace made one space (YAML output folds long lines)."""
        return " ".join(self.output.read_text().split())

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=DEADLINE)


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    (tmp_path / "hosts.ini").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n", encoding="utf-8")
    return dict(os.environ, ERLMCP_DR_LOCK_DIR=str(tmp_path / "locks"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_FORCE_COLOR="0", ANSIBLE_DEPRECATION_WARNINGS="0")


@pytest.fixture
def started(tmp_path, env) -> Iterator[list[Playbook]]:
    """Playbooks started by the test; any still running at the end are killed with their group."""
    runs: list[Playbook] = []
    yield runs
    for run in runs:
        if run.proc.poll() is None:
            run.kill_group()


def record(tmp_path: Path) -> dict[str, Any] | None:
    path = Path(_lock.DirectoryStore(tmp_path / "locks").path_for(KEY))
    return json.loads(path.read_text()) if path.exists() else None


def test_two_playbooks_racing_exactly_one_proceeds(tmp_path, env, started):
    proceed = tmp_path / "proceed"
    for name in ("a", "b"):
        started.append(Playbook(tmp_path, name, env, "-e", f"proceed_file={proceed}"))
    # Wait until one holds the lock and the other has ended (refused).
    wait_for(lambda: any(run.taken() for run in started) and any(run.proc.poll() is not None for run in started),
             DEADLINE, what="one run holding the lock and the other refused")
    proceed.touch()
    codes = [run.wait() for run in started]
    assert sorted(codes) == [0, 2], [run.text() for run in started]
    winner, loser = (started[0], started[1]) if codes[0] == 0 else (started[1], started[0])
    holder = winner.taken()["holder"]
    # The holder is the ansible-playbook process itself (not its forked worker).
    assert holder["pid"] == winner.proc.pid
    out = loser.text()
    assert "Another run holds the run lock for " + KEY in out
    for part in (holder["run_id"], f"PID {winner.proc.pid}", holder["hostname"], "lock_fixture",
                 "state=absent run_id="):
        assert part in out, part
    assert record(tmp_path) is None  # the winner released it in its always section


def test_killed_holder_is_taken_over_by_the_next_run(tmp_path, env, started):
    first = Playbook(tmp_path, "killed", env, "-e", f"proceed_file={tmp_path / 'never'}")
    started.append(first)
    taken, _ = wait_for(first.taken, DEADLINE, what="the first run holding the lock")
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=DEADLINE)
    assert record(tmp_path)["run_id"] == taken["run_id"]  # a killed run leaves its lock behind

    second = Playbook(tmp_path, "next", env)
    started.append(second)
    assert second.wait() == 0, second.text()
    out = second.text()
    assert "took over the run lock for " + KEY in out
    assert taken["run_id"] in out and f"PID {first.proc.pid} is not running" in out
    assert second.taken()["took_over"]["run_id"] == taken["run_id"]


def test_the_holder_names_the_runs_operator_unless_the_task_names_one(tmp_path, env, started):
    for name, extra in (("runner", ()), ("explicit", ("-e", "lock_operator=bob"))):
        run = Playbook(tmp_path, name, env, "-e", "erlmcp_dr_operator=alice", *extra)
        started.append(run)
        assert run.wait() == 0, run.text()
    assert [run.taken()["holder"]["operator"] for run in started] == ["alice", "bob"]


def test_check_mode_takes_nothing(tmp_path, env, started):
    plan = Playbook(tmp_path, "plan", env, "--check", "-v")
    started.append(plan)
    assert plan.wait() == 0, plan.text()
    assert "would_take: true" in plan.text()
    assert record(tmp_path) is None
    assert not (tmp_path / "locks").exists() or not list((tmp_path / "locks").glob("*.lock.json"))


def test_check_mode_reports_the_holder_and_leaves_its_lock(tmp_path, env, started):
    holder = Playbook(tmp_path, "holder", env, "-e", f"proceed_file={tmp_path / 'proceed'}")
    started.append(holder)
    taken, _ = wait_for(holder.taken, DEADLINE, what="the holder taking the lock")
    plan = Playbook(tmp_path, "plan", env, "--check", "-v")
    started.append(plan)
    assert plan.wait() == 0, plan.text()
    out = plan.text()
    assert "a run would be refused now" in out and taken["run_id"] in out
    assert record(tmp_path)["run_id"] == taken["run_id"]  # the plan's always section released nothing
    (tmp_path / "proceed").touch()
    assert holder.wait() == 0, holder.text()
    assert record(tmp_path) is None


def test_run_id_comes_from_the_runner_variable_and_is_data(tmp_path, env, started):
    run_id = "20261125T120000Z-database_switchover-3fa2"
    named = Playbook(tmp_path, "named", env, "-e", f"erlmcp_dr_run_id={run_id}")
    started.append(named)
    assert named.wait() == 0, named.text()
    assert named.taken()["run_id"] == run_id and named.taken()["holder"]["run_id"] == run_id

    marker = tmp_path / "ran"
    template = "{{ lookup('pipe', 'touch " + str(marker) + "') }}"
    hostile = Playbook(tmp_path, "hostile", env, "-e", "erlmcp_dr_run_id=" + template)
    started.append(hostile)
    assert hostile.wait() == 2
    assert "is not a run id: expected 1-200 letters, digits" in hostile.text()
    assert not marker.exists()
    assert record(tmp_path) is None


def test_the_release_command_in_the_busy_message_works(tmp_path, env, started):
    holder = Playbook(tmp_path, "holder", env, "-e", f"proceed_file={tmp_path / 'proceed'}")
    started.append(holder)
    taken, _ = wait_for(holder.taken, DEADLINE, what="the holder taking the lock")
    refused = Playbook(tmp_path, "refused", env)
    started.append(refused)
    assert refused.wait() == 2
    command = refused.text().split("release its lock with: ", 1)[1].split(" (or delete", 1)[0]
    assert command.startswith("ansible localhost -m erlmcp.dr.run_lock -a ")
    args = command.split(" -a ", 1)[1].strip("'")
    ansible = str(Path(sys.executable).with_name("ansible"))
    released = subprocess.run([ansible, "localhost", "-m", "erlmcp.dr.run_lock", "-a", args], env=env,
                              capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert released.returncode == 0, released.stdout + released.stderr
    assert record(tmp_path) is None
    (tmp_path / "proceed").touch()
    assert holder.wait() == 0, holder.text()  # its own release then finds nothing to release
    assert taken["run_id"] in refused.text()


@pytest.mark.parametrize(("args", "message"), [
    ("key=x lease_seconds=5", "lease_seconds is 5: expected at least 60"),
    ("key=' '", "key is empty: expected the identity of what the run changes"),
    ("key=x state=gone", "value of state must be one of: present, absent, got: gone"),
])
def test_bad_options_say_what_was_expected(tmp_path, env, args, message):
    ansible = str(Path(sys.executable).with_name("ansible"))
    proc = subprocess.run([ansible, "localhost", "-m", "erlmcp.dr.run_lock", "-a", args], env=env,
                          capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert proc.returncode == 2
    assert message in " ".join((proc.stdout + proc.stderr).split())
    assert not (tmp_path / "locks").exists()
