# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster guard: one promoting run per cluster, whatever controller it runs from.

The run lock (_lock/store.py) lives on the controller: two controllers that share no lock folder never meet at it. The
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

The holder and its callers share this file; the holder process's skeleton (start and handshake, release, the
watch of ansible-playbook, the hold loop) is _guards/guard_process.py, shared with the Redis guard. The holder imports
nothing but psycopg (the controller's) and that sibling.
"""

from __future__ import absolute_import, division, print_function

import os
import random
import sys
import time

if __name__ == "__main__":  # the holder, run as a script: its sibling, never another copy of the collection
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import guard_process  # noqa: E402 pylint: disable=import-error
else:
    from ansible_collections.erlmcp.dr.plugins.module_utils._guards import guard_process

# The advisory lock's key, in its two-int4 form (pg_locks shows it as classid, objid, objsubid 2): "ERLD", 1.
GUARD_CLASSID = 0x45524C44
GUARD_OBJID = 1
# The database the guard's sessions use on every member: advisory locks are per database, so every run must lock in
# the same one, whatever its login_db.
GUARD_DB = "postgres"
APPLICATION_PREFIX = "erlmcp.dr.guard "
ACQUIRE_SECONDS = 5.0  # how long a start contends for the guard (others release their partial takes within it)

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


majority = guard_process.majority


def application_name(token):
    return APPLICATION_PREFIX + token


TOKEN_MAX = 63 - len(APPLICATION_PREFIX)  # application_name keeps 63 bytes


def new_token(run_id=None):
    """A run's guard token: the run's id and a random suffix, within application_name's 63 bytes."""
    return guard_process.new_token(run_id, TOKEN_MAX)


def run_id_of(holder_application_name):
    """The run id in another holder's application_name (its token without the random suffix)."""
    return guard_process.run_id_of((holder_application_name or "")[len(APPLICATION_PREFIX):])


# ---------------------------------------------------------------- the caller's side (pg_begin, pg_promote)


def start(members, token, watch_pid, acquire_seconds=ACQUIRE_SECONDS, python=None, holder=None):
    """Start the holder for `members` ([{name, conn: psycopg keyword arguments}]) and wait for its answer; holder:
    one spawn() started earlier, else one is started now.

    Returns the holder's answer: ok (a majority is held), held, missing, majority, total, holders (the sessions that
    hold the lock where this run could not take it), msg, and pid (the holder's, when ok). The secrets go to the
    holder on its stdin, never on its command line.
    """
    config = dict(members=members, token=token, watch_pid=watch_pid, acquire_seconds=acquire_seconds)
    return guard_process.start(__file__, config, [m["name"] for m in members], acquire_seconds, python,
                               what="cluster guard", holder=holder, main=main)


def spawn(python=None):
    """A holder started ahead of start() (guard_process.spawn): a fork of the caller, or an interpreter that loads
    psycopg meanwhile."""
    return guard_process.spawn(__file__, python, main)


abandon = guard_process.abandon


def release(pid, token):
    """End the holder `pid` (its sessions close, the members release the lock), if it still is a holder of this
    guard. Returns True when a holder was signalled; a pid reused by another process is left alone, so release is
    safe to call late."""
    return guard_process.release(pid, __file__)


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

    def keep(self):
        """One pass while holding (guard_process.hold): take the lock again on members whose session dropped
        (stopped, restarted, rewound) as they come back."""
        for member in self.members:
            conn = self.conns.get(member["name"])
            if conn is not None and not _alive(conn):
                self.conns.pop(member["name"], None)
                conn = None
            if conn is None:
                self.try_member(member)


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


def main(config_fd=0, answer_fd=1):
    """The holder's entry point: run as this script, or in a fork of the caller (guard_process.fork_holder)."""
    return guard_process.serve(Holder, "psycopg", "cluster guard", config_fd, answer_fd)


if __name__ == "__main__":
    raise SystemExit(main())
