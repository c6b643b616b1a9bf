"""A state folder (ERLMCP_DR_HOME) short of space, on a real small file system (a tmpfs mounted for the test,
unmounted after it), issue 16 row 8: the run is refused before it starts when there is not enough room, and a
disk that fills up during a run still leaves the run's end recorded whole (audit end record, result.json,
reports) or says exactly what is missing: never a traceback, a truncated result.json or a report that crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from runbook_helpers import CLI_HANG_GUARD, runbook_command, venv_path

FILLS_THE_DISK = """---
- name: Fill the disk
  hosts: localhost
  gather_facts: false
  vars:
    dr: "{{ ansible_facts['dr'] }}"  # runbook_params' fact as a variable, as the runbooks name it
    runbook:
      title: Fill the disk
      summary: Changes something, then fills the state folder's file system, as another process might.
      confirm: false
      parameters:
        filler: {type: str, required: true, description: The file that takes every free byte.}
  tasks:
    - name: Resolve the runbook's parameters
      erlmcp.dr.runbook_params:
    - name: Take every free byte
      ansible.builtin.shell: "dd if=/dev/zero of={{ dr.filler | quote }} bs=64k; sync"
      changed_when: true
      failed_when: false
"""
MiB = 1024 * 1024


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of a few MiB as the state folder; unmounted (and so emptied) afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(home)], check=True)
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def _env(tmp_path: Path, home: Path, **extra: str) -> dict:
    books = tmp_path / "playbooks"
    books.mkdir(exist_ok=True)
    (books / "fill_disk.yml").write_text(FILLS_THE_DISK)
    return dict(os.environ, PATH=venv_path(), ERLMCP_DR_HOME=str(home), ERLMCP_DR_PLAYBOOKS=str(books),
                ERLMCP_DR_LOCK_DIR=str(tmp_path / "locks"), **extra)


def _inventory(tmp_path: Path) -> Path:
    hosts = tmp_path / "hosts.ini"
    hosts.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    return hosts


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*runbook_command(), *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=CLI_HANG_GUARD, check=False)


def _fill(path: Path, leave: int) -> None:
    """Takes the file system's free space down to about `leave` bytes."""
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    with open(path / "ballast", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))


def test_a_state_folder_short_of_space_refuses_the_run_before_it_starts(tmp_path: Path, small_home: Path) -> None:
    _fill(small_home, 200 * 1024)
    env = _env(tmp_path, small_home)
    proc = _cli(env, "run", "fill_disk", "-y", "-i", str(_inventory(tmp_path)), "-e", f"filler={tmp_path / 'x'}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    message = proc.stderr
    assert f"not enough free space for a run in the state folder {small_home}" in message
    assert " bytes free, 16777216 needed" in message
    assert "ERLMCP_DR_HOME=" in message and "ERLMCP_DR_MIN_FREE_MB" in message
    assert not (tmp_path / "x").exists()  # nothing ran
    assert sorted(path.name for path in small_home.iterdir()) == ["ballast"]  # nothing written: no run, no record


def test_a_disk_that_fills_during_a_run_still_records_its_end_whole_and_says_why(tmp_path: Path,
                                                                                  small_home: Path) -> None:
    env = _env(tmp_path, small_home)
    proc = _cli(env, "run", "fill_disk", "-y", "-i", str(_inventory(tmp_path)), "--run-id", "filled",
                "-e", f"filler={small_home / 'filler'}")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert (small_home / "filler").stat().st_size > 16 * MiB  # the disk did fill (the run's end reserve is freed)
    run_dir = small_home / "runs" / "filled"
    result = json.loads((run_dir / "result.json").read_text())  # whole JSON, not truncated
    # ansible-playbook itself cannot go on without room for its events (ansible-runner's display callback writes
    # them to the run folder): it stops, and the run says so, whole, instead of a traceback and a torn result.
    assert (result["status"], result["rc"], proc.returncode) == ("failed", 1, 1), proc.stdout + proc.stderr
    assert "the state folder's disk filled up during the run (No space left on device" in result["error"]
    assert "rc 1 (0: it ended with its end state verified)" in result["error"]
    assert "filled up during run filled" in proc.stderr  # said where the operator looks, no traceback
    assert not [path.name for path in run_dir.rglob(".*") if path.is_file()]  # no temp file of an atomic write left
    trail = [json.loads(line) for line in (small_home / "audit" / "audit.jsonl").read_text().splitlines()]
    assert (trail[0]["kind"], trail[-1]["kind"], trail[-1]["result"]) == ("run_start", "run_end", "failed")
    assert result["audit_head"]["seq"] == len(trail) and result["audit_head"]["hash"] == trail[-1]["hash"]
    shown = _cli(env, "report", "filled")
    assert shown.returncode == 0 and "Fill the disk" in shown.stdout, shown.stderr
    verify = _cli(env, "audit", "verify")
    assert verify.returncode == 0 and "chain intact" in verify.stdout, verify.stdout + verify.stderr


def test_a_result_that_does_not_fit_leaves_the_old_file_whole(small_home: Path) -> None:
    from erlmcp_dr.result import RunResult

    result = RunResult(run_id="r", runbook="fill_disk", status="running", rc=None, check=False, started_at="",
                       ended_at="", duration_seconds=0.0, inventory="")
    result.save(small_home)
    before = (small_home / "result.json").read_bytes()
    _fill(small_home, 8 * 1024)
    result.status, result.facts = "successful", {"summary": {"big": "x" * 256 * 1024}}
    with pytest.raises(OSError, match="No space left on device"):
        result.save(small_home)
    assert (small_home / "result.json").read_bytes() == before  # not truncated: the old result, whole
    assert sorted(path.name for path in small_home.iterdir()) == ["ballast", "result.json"]  # no temp file left


def test_files_written_together_on_a_full_disk_keep_the_old_version_of_what_does_not_fit(small_home: Path) -> None:
    """paths.write_private_files (a run's end files, their fsyncs together): what fits is written, what does not
    keeps its old version whole, no temp file is left, and the caller learns which file failed and why."""
    from erlmcp_dr.paths import write_private_files

    big, small = small_home / "report.html", small_home / "run.json"
    assert write_private_files({big: "old report\n", small: "old marker\n"}) == {}
    _fill(small_home, 8 * 1024)
    failed = write_private_files({big: "x" * 256 * 1024, small: "new marker\n"})
    assert list(failed) == [big] and "No space left on device" in str(failed[big])
    assert big.read_text() == "old report\n" and small.read_text() == "new marker\n"
    assert sorted(path.name for path in small_home.iterdir()) == ["ballast", "report.html", "run.json"]
