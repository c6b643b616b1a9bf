# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The skeleton both cluster guards share: _guards/postgres_guard.py (PostgreSQL advisory locks) and
_guards/redis_guard.py (Redis
named connections).

A guard is held on a strict majority of a cluster's members by connections that must outlive the Ansible task that
takes it (tasks run in short-lived forked workers). So each guard runs its own file as a small holder process:
start() launches it with its config on stdin (secrets never on a command line) and waits for one JSON line, its
answer; once it has won, the holder keeps its connections, re-takes members whose connection dropped, and exits
(closing them, which frees every member at once) when the ansible-playbook process it watches ends, or when it is
signalled. What differs per guard is the Holder object it serves: acquire() -> bool, answer(ok) -> dict, keep()
(one pass over the members while holding) and drop_all().

Imported by the holders run as scripts too (then as a sibling module): no import from ansible or the collection.
"""

from __future__ import absolute_import, division, print_function

import ctypes
import gc
import json
import os
import select
import signal
import subprocess
import sys
import time

HANDSHAKE_SECONDS = 60.0  # the holder's start (a Python and its driver) before it begins contending
HOLD_POLL_SECONDS = 0.5  # how often a holder checks its connections and re-takes members where one dropped


def majority(total):
    """The strict majority of `total` members: any two such sets of one member list share a member."""
    return total // 2 + 1


def new_token(run_id=None, max_len=None):
    """A run's guard token: the run's id (what its run lock, result and audit records name) and a random suffix; a
    missing, unprintable or (beyond max_len) long run id gives a time and a longer random part."""
    suffix = os.urandom(2).hex()
    if run_id and run_id.isprintable() and " " not in run_id and (
            max_len is None or len(run_id) + 1 + len(suffix) <= max_len):
        return "%s-%s" % (run_id, suffix)
    return "%s-%s" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), os.urandom(6).hex())


def run_id_of(token):
    """The run id in a token (new_token's run id without the random suffix)."""
    token = token or ""
    return token.rsplit("-", 1)[0] if "-" in token else token


def not_answered(names, token, msg):
    """The answer of a holder that could not run (or did not answer): nothing held."""
    return dict(ok=False, held=[], missing=list(names), majority=majority(len(names)), total=len(names), holders=[],
                token=token, msg=msg)


# ---------------------------------------------------------------- the caller's side


def start(script, config, names, acquire_seconds, python=None, what="guard", holder=None, main=None):
    """Start the holder `script` with `config` (its stdin) and wait for its answer; names: the members' names,
    what: the guard's name in messages; holder: a holder spawn() started earlier (its interpreter and driver loaded
    meanwhile), else one is spawned now (main: see spawn()).

    Returns the holder's answer (ok, held, missing, majority, total, holders, token, msg), with the holder's pid when
    ok; a holder that does not answer is stopped and reported as not_answered.
    """
    proc = holder if holder is not None else spawn(script, python, main)
    try:
        proc.stdin.write(json.dumps(config).encode("utf-8"))
        proc.stdin.close()
    except OSError:  # it died while it loaded (a spawned holder): no answer comes, reported below
        try:
            proc.stdin.close()
        except OSError:
            pass
    line = read_line(proc.stdout, HANDSHAKE_SECONDS + acquire_seconds)
    proc.stdout.close()
    try:
        answer = json.loads(line.decode("utf-8")) if line else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        _stop(proc)
        return not_answered(names, config.get("token"), "the %s's holder did not answer (%s)"
                            % (what, (line or b"no output").decode("utf-8", "replace")))
    if answer.get("ok"):
        answer["pid"] = proc.pid
    else:
        proc.wait()
    return answer


def spawn(script, python=None, main=None):
    """Start the holder `script` before its config is known: it loads its interpreter and driver (most of its start)
    while the caller goes on, and contends for nothing until start() hands it the config. A holder that never gets
    one is ended with abandon().

    main: the holder's entry point (its serve() call). Given, and no other interpreter asked for, the holder is a fork
    of the caller (fork_holder): no interpreter to start, and in a warm run (docs/speed-warm.md) its driver is already
    imported: about 0.13 s less before a guard is held, every run that takes one. Otherwise a new interpreter runs
    `script`."""
    if main is not None and python is None:
        forked = fork_holder(script, main)
        if forked is not None:
            return forked
    # The holder must outlive the task's worker (a long-lived process, not a command whose output a module waits
    # for), which run_command cannot give; it runs on the controller, from the guard's action plugin.
    # pylint: disable-next=ansible-bad-function
    return subprocess.Popen([python or sys.executable, os.path.abspath(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)


class ForkedHolder(object):
    """A holder forked from the caller: what start(), abandon() and the callers use of a Popen (stdin, stdout, pid,
    kill, wait)."""

    def __init__(self, pid, stdin, stdout):
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout

    def kill(self):
        os.kill(self.pid, signal.SIGKILL)

    def wait(self):
        try:
            return os.waitpid(self.pid, 0)[1]
        except ChildProcessError:
            return None


def fork_holder(script, main):
    """The holder as a fork of this process, running main(config_fd, answer_fd), with the command line a holder
    started as `python script` shows (release() and an operator's ps read it); None when that command line cannot be
    shown (this process's own is too short to write it over), and the caller starts one."""
    argv = [sys.executable, os.path.abspath(script)]
    area = _command_line_area()
    if area is None or area[1] - area[0] <= len(_command_line(argv)):
        return None
    config_read, config_write = os.pipe()
    answer_read, answer_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the holder
        code = 70
        try:
            detach((config_read, answer_write))
            _write_command_line(area, argv)
            code = main(config_read, answer_write)
        finally:
            os._exit(code if isinstance(code, int) else 70)
    os.close(config_read)
    os.close(answer_write)
    return ForkedHolder(pid, os.fdopen(config_write, "wb"), os.fdopen(answer_read, "rb"))


def detach(keep_fds=()):
    """In a process forked from an Ansible worker that must outlive it (a guard's holder, an etcd lease keeper):
    keep nothing of the worker's. stdin/stdout/stderr on /dev/null, every other descriptor closed but keep_fds (a lock
    or a pipe the worker holds must not live on here: ansible's result pipes, the run's stdout), the default handlers
    for the signals it is stopped with, and the objects it inherited never collected (gc.freeze: one finalized later
    would close a descriptor number this process has reused since)."""
    if hasattr(gc, "freeze"):
        gc.freeze()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    low = 3
    for fd in sorted(set(keep_fds)) + [_max_fd()]:
        os.closerange(low, fd)
        low = fd + 1
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)


def _command_line(argv):
    return b"\0".join(arg.encode("utf-8", "replace") for arg in argv)


def _command_line_area():
    """(arg_start, arg_end) of this process (proc(5), /proc/self/stat fields 48 and 49), or None."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[45]), int(fields[46])
    except (OSError, IndexError, ValueError):
        return None


def _write_command_line(area, argv):
    """What /proc/<pid>/cmdline shows, written over this process's own (as setproctitle does; the rest NULs)."""
    data = _command_line(argv)
    size = area[1] - area[0]
    ctypes.memmove(area[0], data + b"\0" * (size - len(data)), size)


def _max_fd():
    try:
        return max(os.sysconf("SC_OPEN_MAX"), 256)
    except (OSError, ValueError):
        return 65536


def abandon(proc):
    """End a holder spawn() started that was never given its config: it has connected to nothing, held nothing."""
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass
    _stop(proc)


def read_line(stream, timeout):
    deadline = time.monotonic() + timeout
    data = b""
    fd = stream.fileno()
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return data
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk
    return data


def _stop(proc):
    try:
        proc.kill()
    except OSError:
        pass
    proc.wait()


def release(pid, script):
    """End the holder `pid` (its connections close, the members are free) if it still runs `script`.

    Returns True when a holder was signalled. A pid reused by another process is left alone, so release is safe to
    call late.
    """
    if not pid or not is_holder(pid, script):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return False
    return True


def is_holder(pid, script):
    try:
        with open("/proc/%d/cmdline" % int(pid), "rb") as handle:
            return os.path.basename(script).encode() in handle.read()
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------- the holder's side


class Watch(object):
    """The watched process's end: a pidfd where the kernel has them (no pid reuse race), else polling its pid."""

    def __init__(self, pid):
        self.pid = pid
        self.fd = None
        if pid and hasattr(os, "pidfd_open"):
            try:
                self.fd = os.pidfd_open(pid)
            except OSError:
                self.fd = None

    def ended(self, timeout):
        if not self.pid:
            time.sleep(timeout)
            return False
        if self.fd is not None:
            return bool(select.select([self.fd], [], [], timeout)[0])
        time.sleep(timeout)
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False


def hold(holder, watch_pid, poll_seconds=HOLD_POLL_SECONDS):
    """Hold until the watched process ends or this one is told to stop, calling holder.keep() every poll (it
    re-takes the members whose connection dropped), then let go of every member."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    watched = Watch(watch_pid)
    while not stop:
        if watched.ended(poll_seconds):
            break
        holder.keep()
    holder.drop_all()


def serve(make_holder, driver, what, config_fd=0, answer_fd=1):
    """A holder's main (its script's, or a forked holder's): check the driver imports (before anything is taken; while
    the caller may still be preparing the config), read the config on config_fd, contend, answer on answer_fd, then
    hold. `what` names the guard in messages; returns the exit code. An empty config (the caller abandoned it) ends
    it at once."""
    try:
        __import__(driver)
        missing = None
    except ImportError as exc:
        missing = exc
    text = _read_all(config_fd)
    if not text.strip():
        return 0
    config = json.loads(text)
    if missing is not None:
        names = [m["name"] for m in config["members"]]
        answer = not_answered(names, config["token"], "the %s needs %s in the controller's Python (%s): %s"
                              % (what, driver, sys.executable, missing))
        _answer(answer_fd, answer)
        return 1
    holder = make_holder(config)
    watched_alive = True
    try:
        os.kill(config["watch_pid"], 0)
    except ProcessLookupError:
        watched_alive = False
    ok = watched_alive and holder.acquire()
    _answer(answer_fd, holder.answer(ok))
    if not ok:
        holder.drop_all()
        return 1
    hold(holder, config["watch_pid"])
    return 0


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks).decode("utf-8")
        chunks.append(chunk)


def _answer(fd, answer):
    """The one answer line, then the caller's end sees the pipe closed. Standard output is pointed at /dev/null
    rather than closed, so nothing written later reaches a descriptor the holder opens meanwhile."""
    data = (json.dumps(answer) + "\n").encode("utf-8")
    while data:
        data = data[os.write(fd, data):]
    if fd > 2:
        os.close(fd)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)
