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


def start(script, config, names, acquire_seconds, python=None, what="guard", holder=None):
    """Start the holder `script` with `config` (its stdin) and wait for its answer; names: the members' names,
    what: the guard's name in messages; holder: a holder spawn() started earlier (its interpreter and driver loaded
    meanwhile), else one is spawned now.

    Returns the holder's answer (ok, held, missing, majority, total, holders, token, msg), with the holder's pid when
    ok; a holder that does not answer is stopped and reported as not_answered.
    """
    proc = holder if holder is not None else spawn(script, python)
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


def spawn(script, python=None):
    """Start the holder `script` before its config is known: it loads its interpreter and driver (most of its start)
    while the caller goes on, and contends for nothing until start() hands it the config. A holder that never gets
    one is ended with abandon()."""
    # The holder must outlive the task's worker (a long-lived process, not a command whose output a module waits
    # for), which run_command cannot give; it runs on the controller, from the guard's action plugin.
    # pylint: disable-next=ansible-bad-function
    return subprocess.Popen([python or sys.executable, os.path.abspath(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)


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


def serve(make_holder, driver, what):
    """A holder script's main: check the driver imports (before anything is taken; while the caller may still be
    preparing the config), read the config, contend, answer on stdout, then hold. `what` names the guard in
    messages; returns the exit code. An empty config (the caller abandoned it) ends it at once."""
    try:
        __import__(driver)
        missing = None
    except ImportError as exc:
        missing = exc
    text = sys.stdin.read()
    if not text.strip():
        return 0
    config = json.loads(text)
    if missing is not None:
        names = [m["name"] for m in config["members"]]
        answer = not_answered(names, config["token"], "the %s needs %s in the controller's Python (%s): %s"
                              % (what, driver, sys.executable, missing))
        os.write(sys.stdout.fileno(), (json.dumps(answer) + "\n").encode("utf-8"))
        return 1
    holder = make_holder(config)
    watched_alive = True
    try:
        os.kill(config["watch_pid"], 0)
    except ProcessLookupError:
        watched_alive = False
    ok = watched_alive and holder.acquire()
    out = os.fdopen(sys.stdout.fileno(), "w")
    out.write(json.dumps(holder.answer(ok)) + "\n")
    out.flush()
    out.close()
    if not ok:
        holder.drop_all()
        return 1
    hold(holder, config["watch_pid"])
    return 0
