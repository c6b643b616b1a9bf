"""The files of a run's private data dir (owner marker, extra vars, ansible-runner's settings, the guard's script)
are written whole and 0600 but not fsync'd (paths.write_private_unsynced, issue 19): the folder is removed with its
run, or after a crash by the next run's sweep, so an fsync bought nothing and cost 2-3 ms before the first task."""

from __future__ import annotations

import os
import stat

import pytest

from erlmcp_dr import guard, paths, runner


def test_written_whole_private_and_in_place(tmp_path):
    target = tmp_path / "file"
    paths.write_private_unsynced(target, "first")
    paths.write_private_unsynced(target, "second, longer")
    assert target.read_text() == "second, longer"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "file"
    paths.write_private_unsynced(target, "old")
    with pytest.raises(UnicodeEncodeError):
        paths.write_private_unsynced(target, "\udcff")  # a lone surrogate: not encodable
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_the_private_data_dir_is_made_without_an_fsync(tmp_path, monkeypatch):
    monkeypatch.setenv("ERLMCP_DR_HOME", str(tmp_path / "home"))
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    private = runner.make_private_data_dir("r1")
    runner.write_extravars(private, {"a": 1})
    runner.write_settings(private)
    command = guard.guarded(["ansible-playbook", "x.yml"], private)
    assert synced == []
    assert runner.paths.read_json_object(private / runner.OWNER_FILE)["pid"] == os.getpid()
    assert (private / "env" / "extravars").is_file() and (private / "env" / "settings").is_file()
    assert command[1] == str(private / "guard.py") and (private / "guard.py").read_text() == guard.guard_source()
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in private.rglob("*") if path.is_file())
