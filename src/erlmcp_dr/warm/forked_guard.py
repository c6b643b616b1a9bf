"""The run's guard forked from `runbook` itself, instead of a new interpreter exec'd in ansible-runner's pty.

ansible-runner starts a run's command with pexpect: ptyprocess forks, makes the pty the child's stdin, stdout and
stderr, closes every other descriptor but a pipe that tells the parent whether the exec worked, calls a preexec
function, then execs. The command is the guard (guard.py `guarded`): a fresh Python whose start (about 35 ms quiet,
80-100 ms with 4 CPU burners on 2 cores: issue 19) is the largest single piece of a warm run's start left, and whose
only work on the warm path is to hand ansible-playbook to the zygote and wait. `runbook` has imported the guard's
functions and the warm client already: the pty's child runs `guard_main` in the preexec function and never
returns to the exec. Its process is in the pty's session, the child of the same `runbook` thread, with the same
stdin/stdout/stderr, environment and working directory as the exec'd guard would have: every rule of guard.py holds.

When: the command is a guard `guarded()` wrote in this process, for this interpreter, and the warm start is wanted
(ERLMCP_DR_WARM is not 0): the cold path (and a failed warm start) execs ansible-playbook, never runs it in
`runbook`'s modules. ERLMCP_DR_GUARD_FORK=0 keeps the exec.

A fork copies only the thread that forks: a lock another thread of `runbook` held at that moment (the audit start
record's writer, the terminal's progress line) stays held in the child. So the child imports nothing and never calls
the dynamic loader (whose lock such a thread may hold while a C extension loads): `prepare()` imports what the
guard's warm path calls and finds libc's prctl in the parent. The child also writes through stdout and stderr objects
of its own, never the parent's (their buffers and locks are the parent's; tests/unit/test_forked_guard.py could not
make either show through, so this is a precaution, not a fix of something seen). docs/speed-warm.md, "Round 17".
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import sys
from typing import Any, Callable, Mapping, NoReturn, Optional, Sequence

from erlmcp_dr import guard
from erlmcp_dr.warm import title

FORK_ENV = "ERLMCP_DR_GUARD_FORK"


def wanted(args: Sequence[str], env: Optional[Mapping[str, str]]) -> bool:
    """Is this spawn a guard of this process's, to be forked rather than exec'd?"""
    environ = os.environ if env is None else env
    return (len(args) >= 4 and args[0] == sys.executable and guard.is_guard_script(args[1]) and args[2].isdigit()
            and environ.get(FORK_ENV, "1").strip() != "0" and environ.get(guard.WARM_ENV, "1").strip() != "0")


@functools.lru_cache(maxsize=1)
def prepare() -> Callable[..., Any]:
    """In the parent, before the fork (once per process): the modules the guard's warm path calls imported; returns
    libc's prctl."""
    import ctypes

    from erlmcp_dr.warm import client  # noqa: F401 - imported here so that the child imports nothing

    return ctypes.CDLL(None, use_errno=True).prctl


def preexec(args: Sequence[str], env: Optional[Mapping[str, str]],
            chained: Optional[Callable[[], Any]]) -> Callable[[], NoReturn]:
    """ptyprocess's preexec function for this guard: pexpect's own (SIGHUP ignored) first, then the guard's life
    in this process, then its exit: never the exec, and never back up `runbook`'s stack in the child (its finally
    blocks, its atexit handlers and its buffered output are the parent's)."""
    prctl = prepare()
    command = list(args)

    def run_guard() -> NoReturn:
        code = 1
        try:
            if chained is not None:
                chained()
            _become_guard(command, env)
            code = guard.guard_main(int(command[2]), command[3:], os.path.dirname(os.path.abspath(command[1])),
                                    script_in_child=False, prctl=prctl)
        except BaseException:  # as Python's top level would: the traceback on the run's output, exit 1
            import traceback  # the parent has it (ansible-runner); never a first import here

            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(code & 0xFF)

    return run_guard


def _become_guard(command: list, env: Optional[Mapping[str, str]]) -> None:
    """The child's state as an exec'd guard would start it."""
    _close_inherited_descriptors()  # first: the exec-error pipe's end, whose close tells ptyprocess "started"
    gc.freeze()  # `runbook`'s objects: never walked (nor their pages copied) by this process's collections
    _default_signal_handlers()
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    sys.argv = command[1:]
    title.set_command_line(command)  # /proc and ps show the exec'd guard's command line (as much as fits)


def _close_inherited_descriptors() -> None:
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            try:
                os.close(int(name))
            except OSError:  # the listing's own descriptor, closed already
                pass


def _default_signal_handlers() -> None:
    """Python handlers of `runbook`'s back to the default, as an exec does (ignored signals stay ignored)."""
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    for signum in signal.valid_signals():
        if callable(signal.getsignal(signum)) and signum not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(signum, signal.SIG_DFL)
