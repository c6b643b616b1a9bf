# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster guard: one promoting run per cluster, whatever controller it runs from.

The run lock (_lock.py) lives on the controller: two controllers that share no lock folder never meet at it. The
guard lives with the cluster instead: a session-level advisory lock (pg_try_advisory_lock, which hot standbys grant
too) taken on a strict majority of the inventory's members. Two majorities of one member list always share a member,
and a member grants the lock to one session only, so two runs can never hold the guard at once.

A session lock lives as long as its connection, and Ansible tasks run in short-lived forked workers: the sessions are
held by a small holder process (this file run as a script), started by the runbook's first task (erlmcp.dr.pg_begin).
The holder exits, closing its sessions (PostgreSQL releases their locks at once), when the ansible-playbook process
it watches ends (normally, or killed), when it is sent SIGTERM or SIGKILL itself (it stays in the run's process tree:
a tree kill ends it too). While it holds the guard it takes the lock again on any member whose session dropped (a
member the run stopped, restarted or rewound), so the guard is back on that member as soon as it accepts
connections.

The promotion re-checks the guard right before pg_promote() (held_by): on the members' open connections, a majority of
the members must show the lock granted to this run's session (its application_name carries the run's token). A run
whose holder died, or lost its majority, refuses to promote. See docs/design.md, "The cluster guard", for what this
guarantees and what it does not.

The holder and its callers share this file; the holder imports nothing but psycopg (the controller's).
"""

from __future__ import absolute_import, division, print_function

import json
import os
import random
import select
import signal
import subprocess
import sys
import time

# The advisory lock's key, in its two-int4 form (pg_locks shows it as classid, objid, objsubid 2): "ERLD", 1.
GUARD_CLASSID = 0x45524C44
GUARD_OBJID = 1
# The database the guard's sessions use on every member: advisory locks are per database, so every run must lock in
# the same one, whatever its login_db.
GUARD_DB = "postgres"
APPLICATION_PREFIX = "erlmcp.dr.guard "
ACQUIRE_SECONDS = 5.0  # how long a start contends for the guard (others release their partial takes within it)
HOLD_POLL_SECONDS = 0.5  # how often the holder checks its sessions and takes the lock again where one dropped
HANDSHAKE_SECONDS = 60.0

_HOLDERS_SQL = """
SELECT a.application_name, host(a.client_addr) AS client_addr, a.backend_start::text AS since
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2
"""
_HELD_BY_SQL = """
SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2
  AND a.application_name = %s
"""


def majority(total):
    """The strict majority of `total` members."""
    return total // 2 + 1


def application_name(token):
    return APPLICATION_PREFIX + token


TOKEN_MAX = 63 - len(APPLICATION_PREFIX)  # application_name keeps 63 bytes


def new_token(run_id=None):
    """A run's guard token: the run's id (what its run lock, result and audit records name) and a random suffix,
    within application_name's 63 bytes; a long or missing run id gives a time and a longer random part."""
    suffix = os.urandom(2).hex()
    if run_id and len(run_id) + 1 + len(suffix) <= TOKEN_MAX and run_id.isprintable():
        return "%s-%s" % (run_id, suffix)
    return "%s-%s" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), os.urandom(6).hex())


def run_id_of(holder_application_name):
    """The run id in another holder's application_name (its token without the random suffix)."""
    token = (holder_application_name or "")[len(APPLICATION_PREFIX):]
    return token.rsplit("-", 1)[0] if "-" in token else token


# ---------------------------------------------------------------- the caller's side (pg_begin, pg_promote)


def start(members, token, watch_pid, acquire_seconds=ACQUIRE_SECONDS, python=None):
    """Start the holder for `members` ([{name, conn: psycopg keyword arguments}]) and wait for its answer.

    Returns the holder's answer: ok (a majority is held), held, missing, majority, total, holders (the sessions that
    hold the lock where this run could not take it), msg, and pid (the holder's, when ok). The secrets go to the
    holder on its stdin, never on its command line.
    """
    config = dict(members=members, token=token, watch_pid=watch_pid, acquire_seconds=acquire_seconds)
    # The holder must outlive this task's worker (it is a long-lived process, not a command whose output a module
    # waits for), which run_command cannot give; it runs on the controller, from erlmcp.dr.pg_begin's action.
    # pylint: disable-next=ansible-bad-function
    proc = subprocess.Popen([python or sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
    proc.stdin.write(json.dumps(config).encode("utf-8"))
    proc.stdin.close()
    line = _read_line(proc.stdout, HANDSHAKE_SECONDS + acquire_seconds)
    proc.stdout.close()
    try:
        answer = json.loads(line.decode("utf-8")) if line else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        _stop(proc)
        return dict(ok=False, held=[], missing=[m["name"] for m in members], majority=majority(len(members)),
                    total=len(members), holders=[], token=token,
                    msg="the cluster guard's holder did not answer (%s)"
                    % (line or b"no output").decode("utf-8", "replace"))
    if answer.get("ok"):
        answer["pid"] = proc.pid
    else:
        proc.wait()
    return answer


def _read_line(stream, timeout):
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


def release(pid, token):
    """End the holder `pid` (its sessions close, the members release the lock), if it still is this run's holder.

    Returns True when a holder was signalled. A pid reused by another process is left alone (its command line is
    not this file's with this token's config), so release is safe to call late.
    """
    if not pid or not _is_holder(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return False
    return True


def _is_holder(pid):
    try:
        with open("/proc/%d/cmdline" % int(pid), "rb") as handle:
            return os.path.basename(__file__).encode() in handle.read()
    except (OSError, ValueError):
        return False


def held_by(conn, token):
    """True when the member behind `conn` grants the guard to this run's holder session."""
    row = conn.execute(_HELD_BY_SQL, (GUARD_CLASSID, GUARD_OBJID, application_name(token))).fetchone()
    count = row["n"] if isinstance(row, dict) else row[0]
    return bool(count)


# ---------------------------------------------------------------- the holder


class Holder(object):
    def __init__(self, config):
        self.members = config["members"]
        self.token = config["token"]
        self.acquire_seconds = float(config.get("acquire_seconds") or ACQUIRE_SECONDS)
        self.needed = majority(len(self.members))
        self.conns = {}
        self.holders = {}
        self.errors = {}

    def _connect(self, member):
        import psycopg  # the controller's driver; imported here so the callers' side needs none

        conn_kwargs = dict(member["conn"], dbname=GUARD_DB, application_name=application_name(self.token))
        conn_kwargs.setdefault("connect_timeout", 2)
        return psycopg.connect(autocommit=True, **conn_kwargs)

    def try_member(self, member):
        """Take the lock on one member: True when held now; records who holds it otherwise."""
        import psycopg

        name = member["name"]
        try:
            conn = self._connect(member)
        except psycopg.Error as exc:
            self.errors[name] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return False
        try:
            taken = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (GUARD_CLASSID, GUARD_OBJID)).fetchone()[0]
            if not taken:
                self.holders[name] = [dict(zip(("application_name", "client_addr", "since"), row))
                                      for row in conn.execute(_HOLDERS_SQL, (GUARD_CLASSID, GUARD_OBJID))]
        except psycopg.Error as exc:
            self.errors[name] = str(exc).strip().splitlines()[0]
            taken = False
        if taken:
            self.conns[name] = conn
            self.errors.pop(name, None)
            self.holders.pop(name, None)
        else:
            conn.close()
        return taken

    def drop_all(self):
        for conn in self.conns.values():
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken session is released by the member anyway
                pass
        self.conns.clear()

    def acquire(self):
        """Take the lock on a majority, or give back every partial take. Another run that holds a majority, or no
        other run at all (too few members answer): give up at once. Two runs that each took a minority retry after a
        random pause, so one of them wins while the other gives up within acquire_seconds."""
        deadline = time.monotonic() + self.acquire_seconds
        while True:
            self.holders, self.errors = {}, {}
            for member in self.members:
                self.try_member(member)
            if len(self.conns) >= self.needed:
                return True
            self.drop_all()
            # No other run in sight (members down, a wrong password): waiting changes nothing. Another run holding a
            # majority: it holds the guard for real. Only a split between runs is worth a retry.
            if not self.holders or self.other_holds_majority() or time.monotonic() >= deadline:
                return False
            time.sleep(random.uniform(0.05, 0.3))

    def other_holds_majority(self):
        """Another run holds the guard for real (not a partial take it will give back): no point waiting."""
        counts = {}
        for sessions in self.holders.values():
            for name in set(h["application_name"] for h in sessions):
                counts[name] = counts.get(name, 0) + 1
        return any(count >= self.needed for count in counts.values())

    def answer(self, ok):
        held = sorted(self.conns)
        missing = sorted(m["name"] for m in self.members if m["name"] not in self.conns)
        result = dict(ok=ok, held=held, missing=missing, majority=self.needed, total=len(self.members),
                      token=self.token, holders=[dict(member=name, **h) for name in sorted(self.holders)
                                                 for h in self.holders[name]],
                      errors=dict(self.errors))
        if ok:
            result["msg"] = "the cluster guard is held on %s of %s members (%s)" % (
                len(held), len(self.members), ", ".join(held))
        else:
            others = sorted(set(h["application_name"] for hs in self.holders.values() for h in hs))
            result["msg"] = (
                "another run holds the cluster guard, or too few members answer: it was taken on %s of %s members "
                "within %ss, a majority (%s) is needed. Held by another session on: %s. Not reachable: %s. "
                "Held by: %s. Nothing was changed; wait for the other run to end, or bring members back (the "
                "controller must reach every member; dr_cluster_guard: false in the inventory runs without the guard, "
                "where two controllers could both promote)"
                % (len(held), len(self.members), self.acquire_seconds, self.needed,
                   ", ".join(sorted(self.holders)) or "none",
                   "; ".join("%s (%s)" % item for item in sorted(self.errors.items())) or "none",
                   ", ".join(others) or "nobody"))
        return result

    def hold(self, watch_pid):
        """Hold until the watched process ends or this one is told to stop; take the lock again on members whose
        session dropped (stopped, restarted, rewound) as they come back."""
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        signal.signal(signal.SIGINT, lambda *_: stop.append(True))
        watched = _watch(watch_pid)
        while not stop:
            if watched.ended(HOLD_POLL_SECONDS):
                break
            for member in self.members:
                conn = self.conns.get(member["name"])
                if conn is not None and not _alive(conn):
                    self.conns.pop(member["name"], None)
                    conn = None
                if conn is None:
                    self.try_member(member)
        self.drop_all()


def _alive(conn):
    try:
        conn.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means the session, and its lock, are gone
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
        return False


class _watch(object):
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


def main():
    config = json.loads(sys.stdin.read())
    try:
        import psycopg  # noqa: F401 - the holder's one dependency, checked before anything is taken
    except ImportError as exc:
        names = [m["name"] for m in config["members"]]
        answer = dict(ok=False, held=[], missing=names, majority=majority(len(names)), total=len(names), holders=[],
                      token=config["token"],
                      msg="the cluster guard needs psycopg in the controller's Python (%s): %s" % (sys.executable, exc))
        os.write(sys.stdout.fileno(), (json.dumps(answer) + "\n").encode("utf-8"))
        return 1
    holder = Holder(config)
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
    holder.hold(config["watch_pid"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
