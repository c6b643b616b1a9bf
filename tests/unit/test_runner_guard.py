"""The guard runs a console script of its own interpreter in its forked child (no second interpreter, no teardown
at exit) and execs anything else; either way the command's output, arguments and exit code are kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from erlmcp_dr import guard

_PYTHON_SCRIPT = f"""#!{sys.executable}
import atexit, os, sys
atexit.register(lambda: print("atexit ran", flush=True))
print("name", os.path.basename(sys.argv[0]), sys.argv[1:])
print("in the guard's interpreter", "ctypes" in sys.modules)
if sys.argv[1:] == ["raise"]:
    raise RuntimeError("boom")
sys.exit(int(sys.argv[1]))
"""


def _script(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


def _guarded(tmp_path: Path, *command: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=os.pathsep.join([str(tmp_path / "bin"), os.environ.get("PATH", os.defpath)]))
    argv = guard.guarded(list(command), tmp_path)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def test_a_script_of_the_same_interpreter_runs_in_the_guards_child_with_its_argv_output_and_code(tmp_path):
    _script((tmp_path / "bin").mkdir() or tmp_path / "bin", "fake-playbook", _PYTHON_SCRIPT)
    done = _guarded(tmp_path, "fake-playbook", "3", "--flag")
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == ["name fake-playbook ['3', '--flag']", "in the guard's interpreter True",
                                        "atexit ran"]


def test_an_exception_in_the_script_exits_1_with_its_traceback(tmp_path):
    _script((tmp_path / "bin").mkdir() or tmp_path / "bin", "fake-playbook", _PYTHON_SCRIPT)
    done = _guarded(tmp_path, "fake-playbook", "raise")
    assert done.returncode == 1
    assert "RuntimeError: boom" in done.stderr and "atexit ran" in done.stdout


def test_other_commands_are_execd_as_before(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir, "other-python", _PYTHON_SCRIPT.replace(sys.executable, "/usr/bin/env python3", 1))
    _script(bin_dir, "shell", "#!/bin/sh\necho shell \"$1\"\nexit 4\n")
    assert guard.in_process_script("other-python") is None
    assert guard.in_process_script("no-such-command-here") is None
    done = _guarded(tmp_path, "shell", "hi")
    assert (done.returncode, done.stdout) == (4, "shell hi\n")


def test_the_console_script_is_found_on_path_or_by_its_path(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = _script(bin_dir, "fake-playbook", _PYTHON_SCRIPT)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), os.environ.get("PATH", os.defpath)]))
    assert guard.in_process_script("fake-playbook") == str(script)
    assert guard.in_process_script(str(script)) == str(script)
    venv_playbook = Path(sys.executable).parent / "ansible-playbook"
    assert guard.in_process_script(str(venv_playbook)) == str(venv_playbook)  # this virtualenv's own
