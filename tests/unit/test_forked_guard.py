"""The run's guard is forked from the process that spawns it (warm/forked_guard.py), not exec'd, when the warm start
is wanted; it keeps the exec'd guard's command, output, exit code and start record, and is found by guard_pids.

Each case runs in a child interpreter (its own threads, signal handlers and sys.modules) that spawns a guarded
fake `ansible-playbook` through the runner's pexpect class (guard.closing_spawn), with no zygote to serve it
(ERLMCP_DR_WARM_DIR cannot be made): the warm start is asked for, fails, and the guard starts the command cold.
Whether the guard was forked is read from its memory map: the child interpreter loaded `_sqlite3`, which no guard
of its own would load. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

_FAKE_PLAYBOOK = f"""#!{sys.executable}
import os, sys, time
guard = os.getppid()
maps = open(f"/proc/{{guard}}/maps").read()
cmdline = open(f"/proc/{{guard}}/cmdline", "rb").read().split(b"\\0")
print("guard forked:", "_sqlite3" in maps, "marker:", os.environ.get("ERLMCP_DR_RUN"), flush=True)
print("guard cmdline:", [part.decode() for part in cmdline[:4]], flush=True)
if sys.argv[1] == "hold":
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
sys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else 0)
"""

_SPAWNER = """
import json, os, sys, threading, time
import _sqlite3  # noqa: F401 - what the guard's memory map shows when it is a fork of this process
from pathlib import Path
import pexpect
from erlmcp_dr import guard

private, bin_dir, result, argument = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if os.environ.get("HOLD_STDOUT") == "1":
    # Another thread of the spawning process blocked in a write to stdout (a pipe nobody reads yet): it holds the
    # buffer's lock across the fork, as the audit writer or the progress line may hold one.
    threading.Thread(target=lambda: sys.stdout.write("x" * (1 << 20)) and sys.stdout.flush(), daemon=True).start()
    time.sleep(0.2)
else:
    sys.stdout.write("unflushed by the spawner\\n")  # a pipe: buffered; the fork copies the buffer, never writes it
env = dict(os.environ, PATH=os.pathsep.join([bin_dir, os.environ["PATH"]]))
command = guard.guarded(["fake-playbook", argument], private)
child = guard.closing_spawn()(command[0], command[1:], env=env, ignore_sighup=True, encoding="utf-8", echo=False)
report = {"spawned": child.pid}
if argument == "hold":
    child.expect("guard cmdline:[^\\n]*\\n", timeout=60)
    report["output"] = child.before + child.after
    report["guard_pids"] = guard.guard_pids(private)
    report["killed"] = guard.kill_tree(child.pid, marker=str(private))
child.expect(pexpect.EOF, timeout=60)
report.setdefault("output", child.before)
child.close()
report.update(exit=child.exitstatus, signal=child.signalstatus, start=guard.start_record(private))
Path(result).write_text(json.dumps(report))
"""


def _run(tmp_path: Path, argument: str, **env: str) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    playbook = bin_dir / "fake-playbook"
    playbook.write_text(_FAKE_PLAYBOOK)
    playbook.chmod(0o755)
    private = tmp_path / "private"
    private.mkdir(mode=0o700, exist_ok=True)
    result = tmp_path / "result.json"
    environ = dict(os.environ, ERLMCP_DR_WARM_DIR="/proc/erlmcp-dr-no-such-folder", **env)
    spawner = subprocess.Popen([sys.executable, "-c", _SPAWNER, str(private), str(bin_dir), str(result), argument],
                               env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not result.exists() and spawner.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # a poll with a deadline; stdout is read only after: a thread may be blocked writing it
    spawner.communicate(timeout=60)
    assert result.exists(), spawner.stderr
    return json.loads(result.read_text())


@pytest.mark.parametrize("hold_stdout", ["0", "1"])
def test_a_forked_guard_keeps_the_commands_output_code_and_start_record(tmp_path, hold_stdout):
    """Also while another thread of the spawner is blocked in a write to stdout (holding its buffer's lock), and
    never writing what the spawner's stdout had buffered."""
    report = _run(tmp_path, "3", HOLD_STDOUT=hold_stdout)
    assert report["exit"] == 3, report
    lines = [line.strip() for line in report["output"].splitlines()]
    assert f"guard forked: True marker: {tmp_path / 'private'}" in lines, report
    assert "unflushed by the spawner" not in report["output"]
    start = report["start"]
    assert start["mode"] == "cold" and start["fallback"] is True, start  # the warm start was asked for, and failed
    assert "erlmcp-dr-no-such-folder" in start["reason"]


def test_the_forked_guard_looks_like_the_execd_one_and_guard_pids_finds_it(tmp_path):
    report = _run(tmp_path, "hold")
    private = str(tmp_path / "private")
    lines = [line.strip() for line in report["output"].splitlines()]
    assert f"guard forked: True marker: {private}" in lines, report
    assert any(line.startswith(f"guard cmdline: ['{sys.executable}', '{private}/guard.py', ") for line in lines), lines
    assert "unflushed by the spawner" not in report["output"]
    assert report["guard_pids"] == [report["spawned"]]
    assert report["spawned"] in report["killed"] and report["exit"] is None and report["signal"] == 9, report


@pytest.mark.parametrize("off", [{"ERLMCP_DR_GUARD_FORK": "0"}, {"ERLMCP_DR_WARM": "0"}])
def test_the_guard_is_execd_when_the_fork_or_the_warm_start_is_off(tmp_path, off):
    report = _run(tmp_path, "hold", **off)
    private = str(tmp_path / "private")
    lines = [line.strip() for line in report["output"].splitlines()]
    assert f"guard forked: False marker: {private}" in lines, report
    assert report["guard_pids"] == [report["spawned"]]
