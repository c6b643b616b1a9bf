"""The warm CLI (issue 19, docs/speed-warm.md): `runbook run` handed by its launcher (erlmcp_dr/launch.py) to the user's
CLI zygote, which forks the whole command. What it must keep of a cold `runbook`: the same output and exit codes,
Ctrl-C and kill -9 of `runbook` end the run, and never a zygote holding code or settings older than what is on disk.

Real processes on localhost, as tests/integration/test_runner_kill.py: the `runbook` console script, ansible-runner,
ansible-playbook. Whether a command was served is read from its run's marker (run.json names the process that ran
it: the launcher's own pid when it ran there, a fork of the CLI zygote when served). Every wait is a poll with a
deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from runbook_helpers import runbook_command
from test_runner_kill import DEADLINE, FIXTURES, _holding, _of_run, _processes

from erlmcp_dr.paths import ensure_collection_importable
from erlmcp_dr.warm import client

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict]:
    """A `runbook` environment (`env`) on localhost (inventory `hosts`) with a zygote folder of its own (short: a
    socket's path must be) whose CLI zygotes preload `probe`."""
    (tmp_path / "hosts.ini").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "site_probe.py").write_text("VALUE = 1\n")  # a library the CLI zygote preloads
    warm_dir = Path(tempfile.mkdtemp(prefix="erlmcp-dr-wcli-", dir="/tmp"))
    try:
        env = dict(os.environ, ERLMCP_DR_HOME=str(tmp_path / "home"), ERLMCP_DR_PLAYBOOKS=str(FIXTURES),
                   ERLMCP_DR_WARM_DIR=str(warm_dir), ERLMCP_DR_WARM_PRELOAD="site_probe",
                   PYTHONPATH=os.pathsep.join([str(tmp_path / "lib"), os.environ.get("PYTHONPATH", "")]).rstrip(":"))
        yield {"env": env, "hosts": str(tmp_path / "hosts.ini"), "probe": tmp_path / "lib" / "site_probe.py"}
    finally:
        for zygote in client.zygotes(str(warm_dir)):
            client.stop(zygote["socket"])
        shutil.rmtree(warm_dir, ignore_errors=True)


def _run(env: dict[str, str], *args: str, command: str = "run") -> tuple[int, str, str, bool]:
    """`runbook run ...`: its exit code, stdout, stderr, and whether a CLI zygote served it."""
    run_id = "wcli-" + os.urandom(3).hex()
    proc = subprocess.Popen([*runbook_command(), command, *args, "--run-id", run_id], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)
    out, err = proc.communicate(timeout=DEADLINE * 5)
    return proc.returncode, out, err, _served(env, run_id, proc.pid)


def _served(env: dict[str, str], run_id: str, launcher: int) -> bool:
    marker = Path(env["ERLMCP_DR_HOME"]) / "runs" / run_id / "run.json"
    return marker.is_file() and json.loads(marker.read_text())["pid"] != launcher


def _cli_zygote(env: dict[str, str], other_than: int | None = None) -> dict:
    """The live CLI zygote in the test's folder (waited for: a command that found none started one)."""
    def found() -> dict | None:
        for zygote in client.zygotes(env["ERLMCP_DR_WARM_DIR"]):
            if zygote["kind"] == "cli" and zygote["alive"] and zygote["pid"] != other_than:
                return zygote
        return None

    return wait_for(found, DEADLINE, interval=0.1, what="a CLI zygote")[0]


def test_a_served_run_matches_a_cold_one_and_a_change_on_disk_is_never_served_by_the_old_zygote(lab):
    env = lab["env"]
    args = ("trusted_params", "-i", lab["hosts"], "--yes", "--json")

    # the first command finds no CLI zygote: it runs in its own process and starts one for the next
    code, out, err, served = _run(env, *args)
    assert (code, served) == (0, False), err
    cold = json.loads(out)
    first = _cli_zygote(env)

    code, out, err, served = _run(env, *args)
    assert (code, served) == (0, True), err
    warm = json.loads(out)
    assert _outcome(warm) == _outcome(cold)
    assert warm["status"] == cold["status"] == "successful"
    assert "without the warm start" not in err

    # errors and their exit codes are the command's own
    cold_env = dict(env, ERLMCP_DR_WARM_CLI="0")
    for bad in (("no_such_runbook", "-i", lab["hosts"]), ("trusted_params", "--no-such-flag")):
        expected, _, expected_err, _ = _run(cold_env, *bad)
        code, _, err, _ = _run(env, *bad)
        assert code == expected != 0
        assert err.splitlines()[-1] == expected_err.splitlines()[-1]

    # a library the zygote loaded changed: that zygote never serves again; the next one does, with the new code
    lab["probe"].write_text("VALUE = 2  # changed\n")
    code, _, err, served = _run(env, *args)
    assert (code, served) == (0, False), err
    started = _start_time(first["pid"])
    wait_for(lambda: _start_time(first["pid"]) != started or started is None, DEADLINE, interval=0.1,
             what="the stale CLI zygote to exit")
    second = _cli_zygote(env, other_than=first["pid"])
    code, _, err, served = _run(env, *args)
    assert (code, served) == (0, True), err

    # an environment variable the zygote's key covers changed: another zygote, never the old one
    changed = dict(env, ANSIBLE_FORCE_COLOR="0")
    code, _, err, served = _run(changed, *args)
    assert (code, served) == (0, False), err
    assert _cli_zygote(changed, other_than=second["pid"])["pid"] != second["pid"]


def _outcome(result: dict) -> list:
    return [(step["task"], step["changed"], step["failed"], step["data"]) for step in result["steps"]]


def _start_time(pid: int) -> int | None:
    from erlmcp_dr.guard import process_start_time

    return process_start_time(pid)


def test_ctrl_c_and_kill_9_of_a_served_runbook_end_its_run(lab):
    env, inventory = lab["env"], lab["hosts"]
    _run(env, "trusted_params", "-i", inventory, "--yes")  # starts the CLI zygote
    _cli_zygote(env)
    for signum, expected in ((signal.SIGINT, 1), (signal.SIGKILL, -signal.SIGKILL)):
        run_id = f"wcli-{int(signum)}-" + os.urandom(3).hex()
        proc = subprocess.Popen([*runbook_command(), "run", "long_wait", "-i", inventory, "--run-id", run_id],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)
        local = {"ERLMCP_DR_HOME": env["ERLMCP_DR_HOME"]}
        wait_for(lambda: proc.poll() is None and _holding(local, run_id), DEADLINE, interval=0.1,  # noqa: B023
                 what=f"run {run_id} at its long step")
        assert _served(env, run_id, proc.pid)
        command = json.loads((Path(env["ERLMCP_DR_HOME"]) / "runs" / run_id / "run.json").read_text())["pid"]
        groups = {group for _state, group, cmd in _processes().values() if run_id in cmd} - {os.getpgrp()}
        proc.send_signal(signum)
        assert proc.wait(timeout=DEADLINE) == expected
        wait_for(lambda: not _of_run(run_id, groups) and command not in _processes(), DEADLINE,  # noqa: B023
                 interval=0.1, what=f"no process of run {run_id}")
        if signum == signal.SIGINT:
            result = json.loads((Path(env["ERLMCP_DR_HOME"]) / "runs" / run_id / "result.json").read_text())
            assert result["status"] == "canceled"
    # the killed run held nothing: the next one runs, served
    code, _, err, served = _run(env, "trusted_params", "-i", inventory, "--yes")
    assert (code, served) == (0, True), err
