"""The `runbook` launcher's side of the warm CLI (standard library only: it runs in every `runbook run`).

`run_served(argv)` hands the whole command to the user's CLI zygote (a zygote of kind "cli": it has imported the
CLI, the runner, ansible-runner and the collection's parameter checks) and relays its exit status; None means no
fresh CLI zygote could take it, and the launcher runs the command itself, as before. A missing or stale CLI zygote is
replaced in the background: the command that found it missing is not delayed by its start (the next one is served).

What the launcher keeps of `runbook`'s behaviour while the forked command does the work:
- its stdin, stdout and stderr are the command's (passed as file descriptors: prompts, colours and --json output
  are the same);
- Ctrl-C, SIGTERM, SIGHUP and SIGQUIT sent to the launcher are sent on to the command;
- killing the launcher, even by SIGKILL, kills the command (its run server watches the launcher through a pidfd),
  and the command's run guard then ends the run, as when a cold `runbook` is killed (docs/speed-warm.md);
- the exit status is the command's (a command killed by a signal makes the launcher die of the same signal).
"""

from __future__ import annotations

import _signal
import fcntl
import os
import sys
import time

from erlmcp_dr.warm import client, fingerprint, wire

# typing only for the annotations (never evaluated): every `runbook run` imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from socket import socket as Socket

FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)
KIND = "cli"


def run_served(argv: list[str]) -> int | None:
    """The command's exit code once a CLI zygote ran it; None when none could (the caller runs it)."""
    environ = dict(os.environ)
    cwd = os.getcwd()
    try:
        key = fingerprint.key(environ, cwd, KIND)
        directory = wire.private_dir(wire.default_dir())
        socket_path = os.path.join(directory, f"z-{key}.sock")
        sock = client._connect_fresh(socket_path)
    except OSError:
        return None
    except Exception as exc:  # noqa: BLE001 - nothing was handed over yet: the command runs here, said so
        print(f"runbook: the warm start failed ({type(exc).__name__}: {exc}); the command runs without it",
              file=sys.stderr)
        return None
    if sock is None:
        _start_in_background(socket_path, key, environ, cwd)
        return None
    child = _hand_over(sock, argv, environ, cwd, key)
    if child is None:
        return None
    return _relay(sock, child)


def _hand_over(sock: Socket, argv: list[str], environ: dict[str, str], cwd: str, key: str) -> int | None:
    """Sends the command; the forked command's pid, or None when the zygote did not take it."""
    request = {"kind": KIND, "key": key, "argv": list(argv), "env": environ, "cwd": cwd, "umask": client._umask()}
    try:
        sock.settimeout(client.DEFAULT_START_TIMEOUT)
        wire.send(sock, request, [0, 1, 2])
        reply, fds = wire.receive(sock)
        sock.settimeout(None)
    except OSError:
        sock.close()
        return None
    for fd in fds:
        os.close(fd)
    child = reply.get("child")
    if "error" in reply or not isinstance(child, int) or child <= 0:
        sock.close()
        return None
    return child


def _relay(sock: Socket, child: int) -> int:
    """Forwards the signals an operator sends `runbook` to the command until its status comes; the exit code."""

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except OSError:
            pass

    for signum in FORWARDED:
        _signal.signal(signum, forward)
    status = client.WarmRun(sock, 0, None, child).wait()
    for signum in FORWARDED:
        _signal.signal(signum, _signal.SIG_DFL)
    if status is None:  # the run server went away without a status (killed): as a command killed by SIGKILL
        return 128 + _signal.SIGKILL
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum != _signal.SIGKILL:
            os.kill(os.getpid(), signum)  # the same death as the command's, for the shell or supervisor above
        return 128 + signum
    return os.waitstatus_to_exitcode(status)


def _start_in_background(socket_path: str, key: str, environ: dict[str, str], cwd: str) -> None:
    """Starts a CLI zygote for the next commands, unless one is starting already: its `.starting` file, made here and
    removed by the zygote once it serves, is younger than the start timeout (a zygote that failed to start is tried
    again after that)."""
    starting = wire.beside(socket_path, wire.STARTING_SUFFIX)
    lock_fd = os.open(wire.beside(socket_path, ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            if time.time() - os.stat(starting).st_mtime < client.DEFAULT_START_TIMEOUT:
                return
        except OSError:
            pass
        os.close(os.open(starting, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        client.start_zygote(socket_path, key, environ, cwd, kind=KIND, wait=False)
    except OSError:
        pass  # it could not start: this command runs here, and so will the next ones until one starts
    finally:
        os.close(lock_fd)
