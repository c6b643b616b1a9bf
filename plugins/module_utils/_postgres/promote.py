# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logic of erlmcp.dr.pg_promote: promote one standby, after checks that refuse when it is unsafe.

The checks (target is a standby, same cluster, old primary fenced, replay running, lag within
max_lag_bytes or the old primary's state vouched for) are gathered before anything changes; a
blocking one refuses with what was found, what was expected and the parameter that overrides it.
force overrides the data-loss gates only (lag, paused replay); never the fencing, identity or
single-writer checks. Right before pg_promote() every member is read again (single_writer): another
writable primary, or a reachable node of another cluster, refuses with no override at all.
`run()` asks the candidate and the old primary, checks, then promotes. Private to the collection:
the API may change between releases.
"""

from __future__ import annotations

import subprocess
import time

from ansible_collections.erlmcp.dr.plugins.module_utils._guards import postgres_guard as _cluster_guard
from ansible_collections.erlmcp.dr.plugins.module_utils._common.at_once import each_at_once
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import (
    PgError,
    connect,
    connection_params,
    endpoint,
    is_driver_error,
    lsn_diff,
    max_lsn,
    node_state,
    open_connection,
    parse_lsn,
    query_one,
    translate_errors,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

APPLICATION_NAME = "erlmcp.dr.pg_promote"
_IDENTITY_SQL = """
SELECT pg_postmaster_start_time()::text AS started, current_setting('port') AS port,
       (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier
"""
_MEMBER_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       current_setting('default_transaction_read_only') = 'on' AS read_only,
       pg_postmaster_start_time()::text AS started, current_setting('port') AS port,
       (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier
"""
OLD_PRIMARY_HINTS = dict(host="primary_host", port="primary_port")
MEMBER_HINTS = dict(host="members[].host", port="members[].port")


class Refused(PgError):
    """A precondition failed: nothing was changed."""


class Checks(object):
    def __init__(self, force):
        self.force = force
        self.items = []

    def add(self, name, ok, found, expected, *, override="force", forceable=True):
        """forceable: force overrides it (the data-loss gates only); override names what else does."""
        self.items.append(dict(name=name, ok=ok, found=found, expected=expected, override=override,
                               overridden=bool(ok is False and override and forceable and self.force)))
        return ok

    def blocking(self):
        return [c for c in self.items if c["ok"] is False and not c["overridden"]]

    def message(self, target):
        parts = ["%s: found %s, expected %s%s" % (c["name"], c["found"], c["expected"],
                                                  " (override: %s)" % c["override"] if c["override"] else
                                                  " (no override)")
                 for c in self.blocking()]
        return "refusing to promote %s, nothing was changed: %s" % (target, "; ".join(parts))


def identity(conn):
    return dict(query_one(conn, _IDENTITY_SQL))


def ask_old_primary(params):
    """What the old primary says about itself, or why it cannot be asked (None when not given)."""
    if not params["primary_host"]:
        return None
    conn_params = member_conn_params(params, dict(host=params["primary_host"], port=params["primary_port"]))
    info = dict(host=params["primary_host"], port=params["primary_port"], reachable=False, error=None,
                error_kind=None, role=None,
                timeline=None, current_lsn=None, position_lsn=None, read_only=None, system_identifier=None)
    conn, error = open_connection(conn_params, APPLICATION_NAME, OLD_PRIMARY_HINTS)
    if conn is None:
        info.update(error=str(error), error_kind=error.kind)
        return info
    try:
        with conn:
            state = node_state(conn)
            info["identity"] = identity(conn)
    except Exception as exc:
        if not is_driver_error(exc):
            raise
        info["error"] = "connected to %s but could not read its state: %s" % (endpoint(conn_params), str(exc).strip())
        return info
    info.update(reachable=True, **dict((k, state[k]) for k in ("role", "timeline", "current_lsn", "position_lsn",
                                                               "read_only", "system_identifier")))
    return info


def reference_lsn(old, final_lsn):
    """The furthest of the old primary's position and primary_final_lsn; None when neither is known."""
    return max_lsn((old or {}).get("position_lsn"), final_lsn)


# Writes are unavailable from the fence until the promotion ends: the catch-up and the end of recovery are polled
# as tightly as the floor's bare pg_promote() poll (one cheap query on one open connection per poll).
POLL_SECONDS = 0.01


def candidate_position(state):
    """The furthest WAL the candidate holds (received or replayed), as a byte position; None if unknown."""
    return parse_lsn(max_lsn(state["receive_lsn"], state["replay_lsn"]))


def catch_up(conn, reference, timeout):
    """Wait (deadline) for the candidate to replay up to reference; a timeout is judged by the lag gate."""
    target = parse_lsn(reference)

    def replayed():
        return (parse_lsn(node_state(conn)["replay_lsn"]) or 0) >= target

    started = time.monotonic()
    try:
        wait_for(replayed, timeout, interval=POLL_SECONDS, what="catch-up")
    except WaitTimeout:
        pass
    return round(time.monotonic() - started, 3)


def fence_facts(params, check_mode):
    """What the fence option says: method, whether that fence holds (done), its final LSN.

    In check mode a fence that only announced itself counts as done: the checks judge as after the fence
    (as_if_fenced), since the plan cannot see a fence that did not run.
    """
    fence = params.get("fence") or {}
    method = fence.get("method") or "none"
    res = fence.get("result") or {}
    if method == "none" or res.get("skipped") or not res:
        return dict(method=method, done=False, as_if_fenced=False, final_lsn=None)
    if res.get("method") and res.get("method") != method:
        raise ModuleFailure("fence.result is the result of a %s fence, but fence.method is %s: pass the registered "
                            "result of the erlmcp.dr.pg_fence task that fenced the old primary (fence)"
                            % (res.get("method"), method))
    done = bool(res.get("fenced")) and not res.get("failed") and res.get("state", "fenced") == "fenced"
    if method == "stop" and fence.get("require_clean_shutdown") and done and not check_mode \
            and not res.get("clean_shutdown"):
        raise ModuleFailure(
            "the old primary %s:%s was not shut down cleanly (cluster state: %s): its WAL may go on past its last "
            "checkpoint %s, so no promotion can be sure to lose nothing; nothing was promoted. Expected a clean stop "
            "fence (fence.require_clean_shutdown): run database_failover instead (it gates on the lag), or start the "
            "old primary and run the switchover again"
            % (params.get("primary_host"), params.get("primary_port"), res.get("cluster_state"),
               res.get("final_lsn")))
    return dict(method=method, done=done, as_if_fenced=bool(check_mode and done),
                final_lsn=res.get("final_lsn") if method == "stop" else None)


def check_identity(checks, p, target, old):
    sysid = target["system_identifier"]
    refs = []
    if old and old["reachable"]:
        refs.append(("the old primary %s:%s" % (old["host"], old["port"]), old["system_identifier"]))
    if p["expected_system_identifier"]:
        refs.append(("expected_system_identifier", p["expected_system_identifier"].strip()))
    if refs:
        bad = [(label, value) for label, value in refs if str(value) != str(sysid)]
        checks.add("system_identifier", not bad, "system identifier %s" % sysid,
                   " and ".join("%s (%s)" % (value, label) for label, value in refs), override=None)
    else:
        checks.add("system_identifier", None, "system identifier %s" % sysid,
                   "not comparable: the old primary cannot be asked and expected_system_identifier is not given",
                   override=None)


def check_old_primary_fenced(checks, old, fence):
    if not (old and old["reachable"] and old["role"] == "primary"):
        return
    where = "%s:%s" % (old["host"], old["port"])
    if not old["read_only"] and fence["as_if_fenced"]:
        checks.add("old_primary_fenced", True, "the old primary %s takes writes now; the %s fence before this task "
                   "would fence it (check mode)" % (where, fence["method"]), "it fenced", override=None)
        return
    checks.add("old_primary_fenced", bool(old["read_only"]),
               "the old primary %s is a primary with default_transaction_read_only %s"
               % (where, "on" if old["read_only"] else "off (taking writes)"),
               "it fenced (stopped, or read-only with erlmcp.dr.pg_fence) so that promoting does not make two "
               "primaries taking writes", override=None)


def run_checks(params, conn, target, old, result, fence):
    p = params
    checks = Checks(p["force"])
    where = endpoint(connection_params(p))
    checks.add("target_is_standby", True, "%s in recovery (standby) on timeline %s" % (where, target["timeline"]),
               "a standby", override=None)
    check_identity(checks, p, target, old)
    check_old_primary_fenced(checks, old, fence)
    checks.add("replay_not_paused", not target["replay_paused"],
               "replay %s on the candidate" % ("paused" if target["replay_paused"] else "running"),
               "replay running (SELECT pg_wal_replay_resume() on it)")

    reference = reference_lsn(old, p["primary_final_lsn"] or fence["final_lsn"])
    result["reference_lsn"] = reference
    if reference is not None:
        check_lag(checks, p, conn, target, reference, result)
    else:
        check_old_primary_state(checks, p, old, fence)
    return checks


def check_lag(checks, p, conn, target, reference, result):
    if p["catchup_timeout"] > 0 and not target["replay_paused"]:
        result["catchup_seconds"] = catch_up(conn, reference, p["catchup_timeout"])
        target.update(node_state(conn))
    replayed = parse_lsn(target["replay_lsn"]) or 0
    on_disk = candidate_position(target) or 0
    lag = max(lsn_diff(reference, replayed), 0)
    result["lag_bytes"] = lag
    result["lost_bytes_max"] = max(lsn_diff(reference, on_disk), 0)
    checks.add("lag", lag <= p["max_lag_bytes"],
               "%s bytes behind (the old primary is at %s, the candidate replayed to %s and received to %s%s)"
               % (lag, reference, target["replay_lsn"], target["receive_lsn"],
                  ", after waiting %ss (catchup_timeout)" % p["catchup_timeout"] if p["catchup_timeout"] else ""),
               "at most %s bytes (max_lag_bytes)" % p["max_lag_bytes"],
               override="force, max_lag_bytes or catchup_timeout")


def check_old_primary_state(checks, p, old, fence):
    if old is None:
        why = "no primary_host nor primary_final_lsn given"
    else:
        why = "the old primary cannot be asked (%s) and primary_final_lsn is not given" % old["error"]
    stopped = fence["method"] == "stop" and fence["done"]
    if p["primary_confirmed_down"]:
        vouched = "primary_confirmed_down"
    elif stopped:
        vouched = "the stop fence stopped it (fence.result)"
    elif p["fence_command"]:
        vouched = "fence_command given"
    else:
        vouched = None
    checks.add("old_primary_state", vouched is not None,
               why + ("; %s" % vouched if vouched else "; the lag cannot be judged"),
               "primary_confirmed_down: true (the operator made sure it is down), a successful stop fence "
               "(fence) or a fence_command",
               override="primary_confirmed_down, fence or fence_command (never force)", forceable=False)


# ---------------------------------------------------------------- the members, read again right before promoting


def read_member(member, params, candidate_identity, pool=None):
    """What one member says right now: reachable, writable, identity (never raises for a node that is down).

    pool: the connections opened before the fence (MemberConnections); the member is read on its open connection
    when it still works, else on a new one, exactly as without a pool.
    """
    info = dict(name=member["name"], host=member["host"], port=member["port"], reachable=False, error=None,
                error_kind=None, candidate=False, role=None, read_only=None, writable=None, system_identifier=None)
    conn_params = member_conn_params(params, member)
    row = pool.read(member) if pool is not None else None
    if row is None:
        conn, error = open_connection(conn_params, APPLICATION_NAME, MEMBER_HINTS)
        if conn is None:
            info.update(error=str(error), error_kind=error.kind)
            return info
        try:
            with conn:
                row = dict(query_one(conn, _MEMBER_SQL))
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            info.update(error="connected to %s but could not read its state: %s" % (endpoint(conn_params),
                                                                                    str(exc).strip()),
                        error_kind="other")
            return info
    info.update(reachable=True, role="standby" if row["in_recovery"] else "primary", read_only=row["read_only"],
                writable=not row["in_recovery"] and not row["read_only"],
                system_identifier=row["system_identifier"],
                candidate=dict(started=row["started"], port=row["port"],
                               system_identifier=row["system_identifier"]) == candidate_identity)
    return info


def member_conn_params(params, member):
    return connection_params(dict(params, login_host=member["host"], login_port=member["port"]))


class MemberConnections(object):
    """Connections to the members, opened while the promotion is armed (before the fence) and kept, so the
    single-writer re-read right after the fence costs one query per member instead of one connection each.

    read() answers on the open connection, or None when there is none or it no longer works (a member the fence
    stopped, or whose sessions it terminated): the caller then asks on a new connection, as without a pool.
    """

    def __init__(self, params):
        self.params = params
        self.conns = {}

    def open(self, members):
        """Connects to every member not connected yet, all at once."""
        wanted = dict(((member["host"], member["port"]), member) for member in members)
        missing = [key for key in wanted if key not in self.conns]
        opened = each_at_once(lambda key: open_connection(member_conn_params(self.params, wanted[key]),
                                                          APPLICATION_NAME, MEMBER_HINTS)[0], missing)
        self.conns.update(zip(missing, opened))

    def read(self, member):
        key = (member["host"], member["port"])
        conn = self.conns.get(key)
        if conn is None:
            return None
        try:
            return dict(query_one(conn, _MEMBER_SQL))
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            self.drop(key)
            return None

    def drop(self, key):
        conn = self.conns.pop(key, None)
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # closing a broken connection: nothing left to do with it
                if not is_driver_error(exc):
                    raise

    def close(self):
        for key in list(self.conns):
            self.drop(key)


def members_to_check(params):
    """params['members'] plus the old primary's endpoint when it is not one of them."""
    members = [dict(m) for m in params.get("members") or []]
    host, port = params.get("primary_host"), params.get("primary_port")
    if host and not any(m["host"] == host and m["port"] == port for m in members):
        members.append(dict(name="primary_host", host=host, port=port))
    return members


def check_single_writer(params, conn, result, fence, warn, *, already=False, pool=None):
    """Read every member again; a blocking check (no override, not even force) when another member takes
    writes or a reachable member belongs to another cluster. Unreachable members are warned about."""
    candidate_identity = identity(conn)
    sysid = candidate_identity["system_identifier"]
    exempt = (params.get("primary_host"), params.get("primary_port")) if fence["as_if_fenced"] else None
    seen = [read_member(m, params, candidate_identity, pool) for m in members_to_check(params)]
    result["members"] = seen
    result["members_unreachable"] = [m["name"] for m in seen if not m["reachable"]]
    if result["members_unreachable"]:
        warn("members not reachable right before promoting (not blocking: a failed primary is down by definition): "
             + "; ".join("%s (%s:%s): %s" % (m["name"], m["host"], m["port"], m["error"]) for m in seen
                         if not m["reachable"]))
    others = [m for m in seen if m["reachable"] and not m["candidate"]]
    foreign = [m for m in others if m["system_identifier"] != sysid]
    writers = [m for m in others if m["writable"] and m not in foreign and (m["host"], m["port"]) != exempt]
    result["foreign_members"] = [m["name"] for m in foreign]
    found = ["%s (%s:%s) is a writable primary" % (m["name"], m["host"], m["port"]) for m in writers]
    found += ["%s (%s:%s) belongs to another cluster (system identifier %s, the candidate's is %s)"
              % (m["name"], m["host"], m["port"], m["system_identifier"], sysid) for m in foreign]
    item = dict(name="single_writer", ok=not found,
                found="; ".join(found) or "no other member takes writes (%d asked, %d unreachable)"
                % (len(seen), len(result["members_unreachable"])),
                expected="no member but the candidate taking writes, every reachable member in the candidate's "
                "cluster (fence the writer or fix members)", override=None, overridden=False)
    result["checks"] = result["checks"] + [item]
    if found and already:
        raise Refused("%s already is a primary, but single_writer: found %s; expected %s: split brain, fence all "
                      "but one writer (erlmcp.dr.pg_fence)" % (endpoint(connection_params(params)), "; ".join(found),
                                                               item["expected"]))
    if found:
        raise Refused("refusing to promote %s, nothing was promoted: single_writer: found %s; expected %s "
                      "(no override, not even force)" % (endpoint(connection_params(params)), "; ".join(found),
                                                         item["expected"]))


def check_guard(params, conn, result, fence, pool=None):
    """The cluster guard, re-checked right before pg_promote() (no override): a strict majority of the members must
    show the guard's lock granted to this run's holder session (see _guards/postgres_guard.py). The old primary
    counts when
    the guard held it and the stop fence of this run stopped it: a stopped server grants the lock to nobody."""
    guard = params.get("guard")
    if not guard:
        return
    members = list(params.get("members") or [])
    candidate_key = (params["login_host"], params["login_port"])
    old_key = (params.get("primary_host"), params.get("primary_port"))
    held, why = [], []
    for member in members:
        key = (member["host"], member["port"])
        if key == old_key and fence.get("method") == "stop" and fence.get("done") and \
                member["name"] in (guard.get("held") or []):
            held.append(member["name"])
            continue
        answer = _guard_held_on(params, member, conn if key == candidate_key else None, pool, guard["token"])
        if answer is True:
            held.append(member["name"])
        else:
            why.append("%s: %s" % (member["name"], answer or "the lock is not this run's"))
    needed = _cluster_guard.majority(len(members))
    result["guard_members"] = held
    ok = len(held) >= needed
    result["checks"] = result["checks"] + [dict(
        name="cluster_guard", ok=ok, found="this run's guard (%s) held on %s of %s members (%s)%s"
        % (guard["token"], len(held), len(members), ", ".join(held) or "none", "; " + "; ".join(why) if why else ""),
        expected="held on a majority (%s): no other run, from any controller, can then promote" % needed,
        override=None, overridden=False)]
    if not ok:
        raise Refused("refusing to promote %s, nothing was promoted: cluster_guard: this run's guard %s is held on "
                      "%s of %s members (%s), a majority (%s) is needed: its holder ended or another run took it "
                      "(%s). No override" % (endpoint(connection_params(params)), guard["token"], len(held),
                                             len(members), ", ".join(held) or "none", needed, "; ".join(why)))
    result["guard_token"] = guard["token"]


def _guard_held_on(params, member, conn, pool, token):
    """True when the member grants the guard to this run's holder, else why not (a sentence)."""
    if conn is None and pool is not None:
        conn = pool.conns.get((member["host"], member["port"]))
    try:
        if conn is not None:
            return _cluster_guard.held_by(conn, token)
    except Exception as exc:
        if not is_driver_error(exc):
            raise
    fresh, error = open_connection(member_conn_params(params, member), APPLICATION_NAME, MEMBER_HINTS)
    if fresh is None:
        return "not reachable (%s)" % error
    try:
        with fresh:
            return _cluster_guard.held_by(fresh, token)
    except Exception as exc:
        if not is_driver_error(exc):
            raise
        return "could not read its locks: %s" % str(exc).strip()


def run_fence_command(params, result):
    command = params["fence_command"]
    try:
        # Not AnsibleModule.run_command: the fence must stop at wait_timeout, and this engine has no module object.
        # pylint: disable-next=ansible-bad-function
        proc = subprocess.run(command, shell=True, check=False, timeout=params["wait_timeout"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True)
    except subprocess.TimeoutExpired:
        raise Refused("fence_command did not exit within %ss (wait_timeout); nothing was promoted"
                      % params["wait_timeout"]) from None
    result.update(fence_command_rc=proc.returncode, fence_command_output=proc.stdout.strip())
    if proc.returncode != 0:
        raise Refused("fence_command exited with %s, expected 0; nothing was promoted: %s"
                      % (proc.returncode, proc.stdout.strip()[-2000:]))


def promote(params, conn, target, result, warn):
    p = params
    before = node_state(conn)
    result.update(lsn_before=before["replay_lsn"], receive_lsn_before=before["receive_lsn"])
    started = time.monotonic()
    conn.execute("SELECT pg_promote(wait => false)")
    result["changed"] = True

    def out_of_recovery():
        return not query_one(conn, "SELECT pg_is_in_recovery() AS r")["r"]

    try:
        wait_for(out_of_recovery, p["wait_timeout"], interval=POLL_SECONDS, what="end of recovery")
    except WaitTimeout:
        raise PgError("promotion was requested but %s is still in recovery after %ss (wait_timeout): see its server "
                      "log" % (endpoint(connection_params(p)), p["wait_timeout"])) from None
    xid = query_one(conn, "SELECT txid_current()::text AS xid")["xid"]
    result["promote_seconds"] = round(time.monotonic() - started, 3)
    after = node_state(conn)
    result.update(promoted=True, role=after["role"], timeline_after=after["timeline"], lsn_after=after["current_lsn"],
                  write_xid=xid)
    if not after["timeline"] or after["timeline"] <= target["timeline"]:
        raise PgError("promoted, but the timeline did not move up: %s before, %s after"
                      % (target["timeline"], after["timeline"]))
    if after["read_only"]:
        warn("the new primary has default_transaction_read_only on (fenced earlier?): clients cannot write "
             "until it is unfenced (erlmcp.dr.pg_fence state=unfenced method=read_only)")


def already_primary(params, target, old, result, warn):
    """The result for a target that already is a primary (nothing to do); ModuleFailure on a wrong timeline."""
    p = params
    result.update(role="primary", timeline_after=target["timeline"], lsn_after=target["current_lsn"])
    if old and old["reachable"] and old["role"] == "primary":
        warn("the old primary %s:%s is a primary too (read-only: %s): two primaries"
             % (old["host"], old["port"], old["read_only"]))
    if p["expected_timeline"] is not None and target["timeline"] != p["expected_timeline"]:
        raise ModuleFailure("%s already is a primary, but on timeline %s, expected %s (expected_timeline)"
                            % (endpoint(connection_params(p)), target["timeline"], p["expected_timeline"]), **result)
    result["msg"] = "%s already is a primary on timeline %s" % (endpoint(connection_params(p)), target["timeline"])
    return result


def the_old_primary_itself(params, old, target_identity):
    if not params["primary_host"]:
        return False
    if (params["login_host"], params["login_port"]) == (params["primary_host"], params["primary_port"]):
        return True
    return bool(old and old.get("identity") == target_identity)


def validate(params):
    p = params
    if p["primary_final_lsn"]:
        try:
            parse_lsn(p["primary_final_lsn"])
        except ValueError:
            raise ModuleFailure("primary_final_lsn %r is not an LSN like 0/3000148" % p["primary_final_lsn"]) from None
    for name in ("max_lag_bytes", "catchup_timeout", "wait_timeout"):
        if p[name] < 0:
            raise ModuleFailure("%s must be 0 or more, got %s" % (name, p[name]))


def defaults():
    """Every option's default, as the module's argument spec has it (for callers outside Ansible)."""
    values = dict(primary_host=None, primary_port=5432, primary_final_lsn=None, max_lag_bytes=1048576,
                  catchup_timeout=0, primary_confirmed_down=False, fence_command=None, force=False,
                  expected_system_identifier=None, wait_timeout=60, expected_timeline=None, members=None, fence=None,
                  login_db="postgres", connect_timeout=5, login_password=None)
    return values


def _no_warning(message):
    pass


def run(params, check_mode=False, diff=False, warn=None):
    """Promote the standby at params['login_host']:params['login_port'] once the checks pass.

    Returns the result dict (changed, promoted, checks, timeline_after, ...); raises ModuleFailure
    with the same facts on failure. warn(message) is called for each warning (module.warn).
    """
    return _run(params, check_mode, diff, warn, None)


def run_armed(params, fence_step, check_mode=False, diff=False, warn=None):
    """Fence the old primary and promote the candidate in one step (fence.perform): arm, fence, promote at once.

    Armed first: the candidate's connection and one to every member but the old primary are opened, and every
    check the fence cannot change runs (candidate is a standby, not the old primary, same cluster, replay running,
    no writer but the old primary); a blocking one refuses before anything is fenced. Then fence_step(check_mode)
    fences the old primary and returns pg_fence's result (result['fence_result']; it never raises: a failure is a
    result with failed). A failed fence, or an unclean one when fence.require_clean_shutdown, never promotes.
    Then, at once, the checks that depend on the fence (old primary fenced, lag against its final LSN after the
    catch-up), the single-writer re-read of every member on the open connections, and the promotion.
    """
    return _run(params, check_mode, diff, warn, fence_step)


def _run(params, check_mode, diff, warn, fence_step):
    warn = warn or _no_warning
    p = defaults()
    p.update((k, v) for k, v in params.items() if v is not None)
    validate(p)
    result = dict(changed=False, promoted=False, would_promote=False, checks=[], old_primary=None,
                  fence_command_rc=None, lag_bytes=None, lost_bytes_max=None, reference_lsn=None,
                  catchup_seconds=0.0, promote_seconds=None, timeline_after=None, lsn_after=None, members=[],
                  members_unreachable=[], foreign_members=[])
    where = endpoint(connection_params(p))
    fence = None if fence_step else fence_facts(p, check_mode)
    try:
        conn = connect(connection_params(p), APPLICATION_NAME)
    except PgError as exc:
        result["checks"] = [dict(name="target_is_standby", ok=False, found=str(exc), expected="a reachable standby",
                                 override=None, overridden=False)]
        raise ModuleFailure("cannot promote %s, nothing was changed: %s" % (where, exc), **result) from None
    pool = MemberConnections(p) if fence_step else None
    try:
        with translate_errors(result, "on %s" % where), conn:
            if fence_step:
                p, fence = _arm_and_fence(p, conn, result, pool, fence_step, check_mode)
            outcome = _promote_checked(p, conn, result, fence, check_mode, diff, warn, pool)
    finally:
        if pool is not None:
            pool.close()
    if outcome is not None:
        return outcome
    if p["expected_timeline"] is not None and result["timeline_after"] != p["expected_timeline"]:
        raise ModuleFailure("promoted %s to timeline %s, expected %s (expected_timeline)"
                            % (where, result["timeline_after"], p["expected_timeline"]), **result)
    if diff:
        result["diff"]["after"]["timeline"] = result["timeline_after"]
    result["msg"] = "promoted %s: timeline %s -> %s" % (where, result["timeline_before"], result["timeline_after"])
    return result


# ---------------------------------------------------------------- armed: the fence inside the promotion

_CONNECTION_OPTIONS = ("login_user", "login_password", "login_db", "connect_timeout")


def fence_params(params):
    """erlmcp.dr.pg_fence's parameters for the fence fence.perform asks for: state fenced, fence.method, the old
    primary's data_dir/bin_dir/log_file, its host and port as login_host/login_port, wait_timeout."""
    fence = params.get("fence") or {}
    args = dict(state="fenced", method=fence.get("method"), data_dir=fence.get("data_dir"),
                bin_dir=fence.get("bin_dir"), log_file=fence.get("log_file"),
                login_host=params.get("primary_host"), login_port=params.get("primary_port") or 5432,
                wait_timeout=params.get("wait_timeout") if params.get("wait_timeout") is not None else 60)
    args.update((k, params[k]) for k in _CONNECTION_OPTIONS if params.get(k) is not None)
    return args


def fence_here(args, check_mode, diff, warn):
    """Run pg_fence's engine in this process (the old primary's host is this machine); a failure is returned as a
    result with failed and msg, as a shipped module's would be."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.fence import run as fence_run

    full = dict(bin_dir=None, log_file=None, data_dir=None, login_user="postgres", login_password=None,
                login_db="postgres", connect_timeout=5)
    full.update((k, v) for k, v in args.items() if v is not None)
    warnings = []
    try:
        outcome = fence_run(full, check_mode=check_mode, diff=diff, warn=warnings.append)
    except ModuleFailure as exc:
        outcome = dict(exc.facts, failed=True, msg=str(exc))
    except Exception as exc:  # noqa: BLE001 - a fence that broke may have stopped the server
        outcome = dict(changed=False, failed=True, state="fenced", method=full.get("method"),
                       msg="the fence broke off, the old primary may be stopped: %s: %s" % (type(exc).__name__, exc))
    for message in warnings:
        warn(message)
    if warnings:
        outcome["warnings"] = warnings
    return outcome


def _arm(p, conn, result, pool):
    """Every check the fence cannot change, before it: a blocking one refuses with nothing fenced."""
    where = endpoint(connection_params(p))
    target = node_state(conn)
    old = ask_old_primary(p)
    if the_old_primary_itself(p, old, identity(conn)):
        raise ModuleFailure("%s is the primary you are failing away from (primary_host/primary_port): point "
                            "login_host/login_port at a standby; nothing was fenced" % where, **result)
    checks = Checks(p["force"])
    if target["in_recovery"]:
        check_identity(checks, p, target, old)
        checks.add("replay_not_paused", not target["replay_paused"],
                   "replay %s on the candidate" % ("paused" if target["replay_paused"] else "running"),
                   "replay running (SELECT pg_wal_replay_resume() on it)")
    old_key = (p.get("primary_host"), p.get("primary_port"))
    others = [m for m in members_to_check(p) if (m["host"], m["port"]) != old_key]
    pool.open(others)  # not the old primary: the fence ends (stop) or terminates (read_only) its sessions
    candidate_identity = identity(conn)
    seen = [read_member(m, p, candidate_identity, pool) for m in others]
    writers = ["%s (%s:%s) is a writable primary" % (m["name"], m["host"], m["port"]) for m in seen
               if m["reachable"] and not m["candidate"] and m["writable"]]
    checks.add("single_writer", not writers, "; ".join(writers) or "no member but the old primary takes writes",
               "no member but the old primary (fenced next) and the candidate taking writes (fence the writer or "
               "fix members)", override=None)
    blocking = checks.blocking()
    if blocking:
        result["checks"] = checks.items
        raise Refused(checks.message(where).replace("nothing was changed", "nothing was fenced nor changed"))


def _arm_and_fence(p, conn, result, pool, fence_step, check_mode):
    """Arm, fence, judge the fence. Returns the parameters with the fence's result and the fence facts."""
    _arm(p, conn, result, pool)
    method = (p.get("fence") or {}).get("method") or "none"
    fence_result = fence_step(check_mode) if method != "none" else dict(
        changed=False, skipped=True, method="none", msg="fence.method is none: nothing was fenced")
    result["fence_result"] = fence_result
    if fence_result.get("changed"):
        result["changed"] = True  # whatever comes next, this step changed the old primary
    if fence_result.get("failed"):
        # The fence's own message first: it is what the runbooks' abort message quotes after "fencing <node> failed"
        raise ModuleFailure("%s (fencing the old primary %s:%s); nothing was promoted"
                            % (fence_result.get("msg") or "the fence failed, see fence_result", p.get("primary_host"),
                               p.get("primary_port")), **result)
    p = dict(p, fence=dict(p["fence"], result=fence_result))
    try:
        fence = fence_facts(p, check_mode)
    except ModuleFailure as exc:
        raise ModuleFailure(str(exc), **result) from None
    return p, fence


def _promote_checked(p, conn, result, fence, check_mode, diff, warn, pool=None):
    """Gather, check, re-check the members, promote. Returns a finished result when there is nothing (more) to
    do (already a primary, check mode), None after a promotion."""
    where = endpoint(connection_params(p))
    target = node_state(conn)
    result.update(timeline_before=target["timeline"], lsn_before=target["replay_lsn"],
                  receive_lsn_before=target["receive_lsn"], system_identifier=target["system_identifier"],
                  role=target["role"])
    old = ask_old_primary(p)
    if the_old_primary_itself(p, old, identity(conn)):
        raise ModuleFailure("%s is the primary you are failing away from (primary_host/primary_port): point "
                            "login_host/login_port at a standby" % where, **result)
    result["old_primary"] = dict((k, v) for k, v in (old or {}).items() if k != "identity") or None
    if not target["in_recovery"]:
        check_single_writer(p, conn, result, dict(fence, as_if_fenced=False), warn, already=True, pool=pool)
        return already_primary(p, target, old, result, warn)
    checks = run_checks(p, conn, target, old, result, fence)
    result["checks"] = checks.items
    if checks.blocking():
        raise Refused(checks.message(where))
    forced = [c["name"] for c in checks.items if c["overridden"]]
    if forced:
        warn("force overrode the failed checks: %s" % ", ".join(forced))
    if diff:
        result["diff"] = dict(before=dict(role="standby", timeline=target["timeline"]),
                              after=dict(role="primary", timeline="%s or later" % (target["timeline"] + 1)))
    runs_fence = bool(p["fence_command"]) and not (old and old["reachable"])
    if runs_fence and not check_mode:
        run_fence_command(p, result)
    check_single_writer(p, conn, result, fence, warn, pool=pool)
    if not check_mode:
        check_guard(p, conn, result, fence, pool)
    if check_mode:
        result.update(changed=True, would_promote=True,
                      msg="would promote %s%s" % (where, " after running fence_command" if runs_fence else ""))
        return result
    promote(p, conn, target, result, warn)
    return None
