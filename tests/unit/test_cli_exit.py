"""`runbook run` / `runbook plan` end their process at once once the run is written, keeping what an orderly exit
does that matters: flushed output, the atexit handlers, the exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"

_EXIT_NOW = """
import atexit, sys, threading
from erlmcp_dr.cli import exit_now
atexit.register(lambda: print("atexit ran", flush=True))
if sys.argv[1] == "thread":
    go = threading.Event()
    threading.Thread(target=go.wait, args=(30,)).start()  # a non-daemon thread still running
    threading.Timer(0.05, go.set).start()
print("buffered", end="")
exit_now(int(sys.argv[2]))
print(" and returned")
sys.exit(5)
"""


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _EXIT_NOW, *args], capture_output=True, text=True, timeout=60)


def test_exit_now_flushes_output_runs_atexit_handlers_and_keeps_the_code():
    done = _python("plain", "3")
    assert (done.returncode, done.stdout) == (3, "bufferedatexit ran\n")


def test_exit_now_leaves_a_process_with_a_running_thread_to_the_usual_exit():
    done = _python("thread", "3")
    assert (done.returncode, done.stdout) == (5, "buffered and returned\natexit ran\n")


def test_the_runbook_command_still_prints_its_result_and_exit_code(tmp_path):
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n",
                         encoding="utf-8")
    env = dict(os.environ, ERLMCP_DR_HOME=str(tmp_path / "home"), ERLMCP_DR_PLAYBOOKS=str(FIXTURES))
    command = [sys.executable, "-m", "erlmcp_dr", "run", "local_smoke", "-i", str(inventory), "--yes", "--json"]
    done = subprocess.run([*command, "-e", "greeting=hi"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "successful"
    assert json.loads((Path(result["run_dir"]) / "result.json").read_text(encoding="utf-8"))["status"] == "successful"

    failed = subprocess.run([*command, "-e", "greeting=hi", "-e", "fail_step=true"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert failed.returncode == 1 and json.loads(failed.stdout)["status"] == "failed"
