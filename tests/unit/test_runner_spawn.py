"""ansible-runner's child is closed without ptyprocess's fixed delay once it has exited, and as before while alive."""

from __future__ import annotations

import ansible_runner.runner as runner_module
import pexpect

from erlmcp_dr import guard, paths


def _wait_for():
    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for

    return wait_for


def test_an_exited_child_is_closed_without_the_delay_and_keeps_its_exit_status():
    child = guard.closing_spawn()("sh", ["-c", "exit 3"])
    child.expect(pexpect.EOF, timeout=10)
    _wait_for()(lambda: not child.isalive(), 10, interval=0.01, what="the child exiting")

    child.close()

    assert child.ptyproc.delayafterclose == 0
    assert (child.exitstatus, child.closed) == (3, True)


def test_a_child_still_running_is_closed_as_before_and_terminated():
    child = guard.closing_spawn()("sleep", ["30"])
    assert child.isalive()

    child.close()

    assert child.ptyproc.delayafterclose == 0.1  # ptyprocess's own wait before it checks and terminates
    assert not child.isalive()
    assert child.signalstatus is not None


def test_only_ansible_runners_module_gets_the_closing_spawn():
    original = pexpect.spawn
    guard.close_exited_children_at_once()
    guard.close_exited_children_at_once()  # idempotent

    assert runner_module.pexpect.spawn is guard.closing_spawn()
    assert issubclass(runner_module.pexpect.spawn, original)
    assert pexpect.spawn is original  # nobody else's pexpect changes
    assert runner_module.pexpect.EOF is pexpect.EOF
    assert runner_module.pexpect.exceptions is pexpect.exceptions
