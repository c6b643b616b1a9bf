#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_promote
short_description: Promote a PostgreSQL standby to primary, after checking it is safe to
version_added: "0.1.0"
description:
  - Promotes the standby the login options point at (the candidate). It only speaks SQL, so it runs from the
    controller.
  - 'Before changing anything it checks, and on any failed check fails saying what it found, what it expected and
    which parameter overrides it, leaving everything as it was:'
  - C(target_is_standby) - the candidate is reachable and in recovery.
  - C(system_identifier) - the candidate belongs to the same cluster as the old primary (when it can be asked) and
    as O(expected_system_identifier) (when given). Never overridden, not even by O(force). When the old primary
    cannot be asked and O(expected_system_identifier) is not given it cannot be compared (RV(checks[].ok) null).
  - C(old_primary_fenced) - when the old primary can be asked and is still a primary, it must be fenced
    (C(default_transaction_read_only) on, see M(erlmcp.dr.pg_fence)), or promoting makes two primaries taking
    writes. Overridden by O(force).
  - C(replay_not_paused) - WAL replay is not paused on the candidate. Overridden by O(force).
  - C(lag) - the candidate has replayed WAL up to within O(max_lag_bytes) of where the old primary is (its current
    LSN, when it can be asked) or ended (O(primary_final_lsn)), after waiting up to O(catchup_timeout) for it to
    catch up. Measured on the replay LSN (as RV(erlmcp.dr.pg_replication_info#module:nodes.lag_bytes) is), which
    also bounds how long the promotion replays. Overridden by O(force).
  - C(old_primary_state) - when neither is known, the lag cannot be judged, and the operator must say the old
    primary is down (O(primary_confirmed_down)) or give a O(fence_command). Overridden by O(force).
  - When the old primary cannot be asked and O(fence_command) is given, it runs on the controller after the checks
    pass and before promoting, and must exit 0.
  - The promotion runs C(pg_promote) (with C(wait => false)), polls until C(pg_is_in_recovery) is false (up to
    O(wait_timeout)), then verifies that a write succeeds (C(txid_current) assigns a transaction id, impossible on
    a standby) and that the timeline moved up.
  - When the candidate already is a primary nothing is done (RV(ignore:changed) false); it fails only if
    O(expected_timeline) is given and differs. When the candidate is the old primary itself it fails.
  - In check mode the checks run (and the catch-up wait, which only reads) and the module reports whether it would
    promote; it never promotes nor runs O(fence_command).
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.postgres
options:
  primary_host:
    description:
      - Host of the old primary (the one failed over away from). Used to compare system identifiers, to check it is
        fenced and to measure the candidate's lag against its current LSN. It may be down.
      - The login options other than host and port are used for it too.
    type: str
  primary_port:
    description: Port of the old primary.
    type: int
    default: 5432
  primary_final_lsn:
    description:
      - Where the old primary's WAL ended, for example RV(erlmcp.dr.pg_fence#module:final_lsn) after a stop fence.
        The lag is measured against the higher of this and the old primary's current LSN.
    type: str
  max_lag_bytes:
    description:
      - Largest lag, in bytes of WAL, at which the candidate may be promoted (Patroni's C(maximum_lag_on_failover)
        default). A switchover uses 0 with a O(catchup_timeout).
    type: int
    default: 1048576
  catchup_timeout:
    description:
      - Seconds to wait for the candidate to replay up to the old primary's current or final LSN before the lag is
        judged. 0 judges it at once.
    type: int
    default: 0
  primary_confirmed_down:
    description:
      - The operator confirms that the old primary is down and will not take writes. Required when neither the old
        primary can be asked nor O(primary_final_lsn) is known (unless O(fence_command) or O(force)).
    type: bool
    default: false
  fence_command:
    description:
      - Shell command run on the controller before promoting when the old primary cannot be asked (for example one
        that powers it off through its management board). It must exit 0 within O(wait_timeout) seconds, or nothing
        is promoted.
    type: str
  force:
    description:
      - Promote even when the lag, paused-replay, old-primary-fenced or unknown-old-primary checks fail. Never
        overrides the system identifier check nor the candidate being a standby.
    type: bool
    default: false
  expected_system_identifier:
    description:
      - System identifier the candidate must have (as a string), for when the old primary cannot be asked.
    type: str
  wait_timeout:
    description:
      - Seconds to wait for the promotion to finish (and for O(fence_command) to exit).
    type: int
    default: 60
  expected_timeline:
    description:
      - Timeline the candidate must be on after promotion, or already be on when it is a primary.
    type: int
attributes:
  check_mode:
    support: full
    description: Runs the checks (and the catch-up wait, which only reads) and reports whether it would promote; never
      promotes nor runs O(fence_command).
  diff_mode:
    support: full
    description: Shows the candidate's role and timeline before and after.
"""

EXAMPLES = r"""
- name: Fail over to pg-b, the old primary is fenced or down
  erlmcp.dr.pg_promote:
    login_host: "{{ hostvars['pg-b'].pg_host }}"
    login_port: "{{ hostvars['pg-b'].pg_port }}"
    login_user: "{{ pg_login_user }}"
    login_password: "{{ pg_login_password }}"
    primary_host: "{{ hostvars['pg-a'].pg_host }}"
    primary_port: "{{ hostvars['pg-a'].pg_port }}"
    max_lag_bytes: 1048576
  register: promotion

- name: Switchover - zero data loss, the old primary was stopped by erlmcp.dr.pg_fence
  erlmcp.dr.pg_promote:
    login_host: 10.0.2.10
    login_port: 5432
    login_user: erlmcp_dr
    login_password: "{{ vault_pg_password }}"
    primary_host: 10.0.1.10
    primary_final_lsn: "{{ fence.final_lsn }}"
    max_lag_bytes: 0
    catchup_timeout: 60

- name: Region lost - the old primary cannot be reached, the operator confirmed it is down
  erlmcp.dr.pg_promote:
    login_host: 10.0.2.10
    login_user: erlmcp_dr
    login_password: "{{ vault_pg_password }}"
    primary_host: 10.0.1.10
    primary_confirmed_down: true
    expected_system_identifier: "7311520438512345678"
"""

RETURN = r"""
promoted:
  description: Whether this run promoted the candidate.
  returned: always
  type: bool
would_promote:
  description: In check mode, whether a real run would promote.
  returned: always
  type: bool
role:
  description: The candidate's role after the run (C(primary) or C(standby)).
  returned: when the candidate was reachable
  type: str
timeline_before:
  description: The candidate's timeline before promotion.
  returned: when the candidate was reachable
  type: int
  sample: 1
timeline_after:
  description: The candidate's timeline after promotion (or now, when it already was a primary); null in check mode.
  returned: when the candidate was reachable
  type: int
  sample: 2
lsn_before:
  description: The candidate's replay LSN just before promotion.
  returned: when the candidate was reachable
  type: str
receive_lsn_before:
  description: The candidate's receive LSN just before promotion.
  returned: when the candidate was reachable
  type: str
lsn_after:
  description: C(pg_current_wal_lsn) on the new primary; null in check mode.
  returned: when the candidate was reachable
  type: str
reference_lsn:
  description: Where the old primary is or ended (the higher of its current LSN and O(primary_final_lsn)); null
    when unknown.
  returned: when the candidate was reachable
  type: str
lag_bytes:
  description: The candidate's replay lag behind RV(reference_lsn) at the gate, in bytes; null when unknown.
  returned: when the candidate was reachable
  type: int
lost_bytes_max:
  description:
    - Bytes of WAL the old primary had that the candidate did not (at most; 0 when none), from the higher of the
      candidate's receive and replay LSN (a promotion replays all WAL received); null when unknowable (the old
      primary could not be asked and O(primary_final_lsn) was not given).
  returned: when the candidate was reachable
  type: int
catchup_seconds:
  description: Seconds spent waiting for the candidate to catch up (O(catchup_timeout)).
  returned: when the candidate was reachable
  type: float
promote_seconds:
  description: Seconds from C(pg_promote) until the candidate took a write; null when not promoted.
  returned: when the candidate was reachable
  type: float
write_xid:
  description: The transaction id C(txid_current) assigned on the new primary, proof that it takes writes.
  returned: when promoted
  type: str
system_identifier:
  description: The candidate's system identifier.
  returned: when the candidate was reachable
  type: str
old_primary:
  description: What was found at O(primary_host) (host, port, reachable, error, role, timeline, current_lsn,
    position_lsn, read_only, system_identifier); null when O(primary_host) is not given.
  returned: always
  type: dict
checks:
  description: Every check run before promoting.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: C(target_is_standby), C(system_identifier), C(old_primary_fenced), C(replay_not_paused), C(lag)
        or C(old_primary_state).
      type: str
    ok:
      description: Whether it passed; null when it could not be evaluated.
      type: bool
    found:
      description: What was found.
      type: str
    expected:
      description: What was expected.
      type: str
    override:
      description: The parameter that overrides it, null when nothing does.
      type: str
    overridden:
      description: Whether it failed and O(force) overrode it.
      type: bool
fence_command_rc:
  description: Exit status of O(fence_command); null when it did not run.
  returned: always
  type: int
fence_command_output:
  description: Its standard output and error.
  returned: when O(fence_command) ran
  type: str
"""

import subprocess  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import (  # noqa: E402
    PSYCOPG_IMPORT_ERROR,
    PgError,
    connect,
    connection_argument_spec,
    connection_params,
    endpoint,
    format_lsn,
    lsn_diff,
    node_state,
    parse_lsn,
    psycopg,
    query_one,
    try_connect,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._wait import WaitTimeout, wait_for  # noqa: E402

APPLICATION_NAME = "erlmcp.dr.pg_promote"
_IDENTITY_SQL = """
SELECT pg_postmaster_start_time()::text AS started, current_setting('port') AS port,
       (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier
"""


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        primary_host=dict(type="str"),
        primary_port=dict(type="int", default=5432),
        primary_final_lsn=dict(type="str"),
        max_lag_bytes=dict(type="int", default=1048576),
        catchup_timeout=dict(type="int", default=0),
        primary_confirmed_down=dict(type="bool", default=False),
        fence_command=dict(type="str"),
        force=dict(type="bool", default=False),
        expected_system_identifier=dict(type="str"),
        wait_timeout=dict(type="int", default=60),
        expected_timeline=dict(type="int"),
    )
    return spec


class Refused(Exception):
    """A precondition failed: nothing was changed."""


class Checks(object):
    def __init__(self, force):
        self.force = force
        self.items = []

    def add(self, name, ok, found, expected, override="force"):
        self.items.append(dict(name=name, ok=ok, found=found, expected=expected, override=override,
                               overridden=bool(ok is False and override and self.force)))
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
    conn_params = connection_params(dict(params, login_host=params["primary_host"],
                                         login_port=params["primary_port"]))
    info = dict(host=params["primary_host"], port=params["primary_port"], reachable=False, error=None, role=None,
                timeline=None, current_lsn=None, position_lsn=None, read_only=None, system_identifier=None)
    conn, error = try_connect(conn_params, APPLICATION_NAME)
    if conn is None:
        info["error"] = error
        return info
    try:
        with conn:
            state = node_state(conn)
            info["identity"] = identity(conn)
    except psycopg.Error as exc:
        info["error"] = "connected to %s but could not read its state: %s" % (endpoint(conn_params), str(exc).strip())
        return info
    info.update(reachable=True, **dict((k, state[k]) for k in ("role", "timeline", "current_lsn", "position_lsn",
                                                               "read_only", "system_identifier")))
    return info


def reference_lsn(old, final_lsn):
    known = [parse_lsn(x) for x in ((old or {}).get("position_lsn"), final_lsn) if x]
    return format_lsn(max(known)) if known else None


def candidate_position(state):
    known = [parse_lsn(x) for x in (state["receive_lsn"], state["replay_lsn"]) if x]
    return max(known) if known else None


def catch_up(conn, reference, timeout):
    """Wait (deadline) for the candidate to replay up to reference; a timeout is judged by the lag gate."""
    target = parse_lsn(reference)

    def replayed():
        return (parse_lsn(node_state(conn)["replay_lsn"]) or 0) >= target

    started = time.monotonic()
    try:
        wait_for(replayed, timeout, interval=0.1, what="catch-up")
    except WaitTimeout:
        pass
    return round(time.monotonic() - started, 3)


def run_checks(module, conn, target, old, result):
    p = module.params
    checks = Checks(p["force"])
    where = endpoint(connection_params(p))
    checks.add("target_is_standby", True, "%s in recovery (standby) on timeline %s" % (where, target["timeline"]),
               "a standby", override=None)

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

    if old and old["reachable"] and old["role"] == "primary":
        checks.add("old_primary_fenced", bool(old["read_only"]),
                   "the old primary %s:%s is a primary with default_transaction_read_only %s"
                   % (old["host"], old["port"], "on" if old["read_only"] else "off (taking writes)"),
                   "it fenced (stopped, or read-only with erlmcp.dr.pg_fence) so that promoting does not make two "
                   "primaries taking writes")

    checks.add("replay_not_paused", not target["replay_paused"],
               "replay %s on the candidate" % ("paused" if target["replay_paused"] else "running"),
               "replay running (SELECT pg_wal_replay_resume() on it)")

    reference = reference_lsn(old, p["primary_final_lsn"])
    result["reference_lsn"] = reference
    if reference is not None:
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
    else:
        if old is None:
            why = "no primary_host nor primary_final_lsn given"
        else:
            why = "the old primary cannot be asked (%s) and primary_final_lsn is not given" % old["error"]
        confirmed = bool(p["primary_confirmed_down"] or p["fence_command"])
        checks.add("old_primary_state", confirmed,
                   why + ("; %s" % ("primary_confirmed_down" if p["primary_confirmed_down"] else "fence_command given")
                          if confirmed else "; the lag cannot be judged"),
                   "primary_confirmed_down: true (the operator made sure it is down) or a fence_command",
                   override="force, primary_confirmed_down or fence_command")
    return checks


def run_fence_command(module, result):
    command = module.params["fence_command"]
    try:
        proc = subprocess.run(command, shell=True, check=False, timeout=module.params["wait_timeout"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True)
    except subprocess.TimeoutExpired:
        raise Refused("fence_command did not exit within %ss (wait_timeout); nothing was promoted"
                      % module.params["wait_timeout"]) from None
    result.update(fence_command_rc=proc.returncode, fence_command_output=proc.stdout.strip())
    if proc.returncode != 0:
        raise Refused("fence_command exited with %s, expected 0; nothing was promoted: %s"
                      % (proc.returncode, proc.stdout.strip()[-2000:]))


def promote(module, conn, target, result):
    p = module.params
    before = node_state(conn)
    result.update(lsn_before=before["replay_lsn"], receive_lsn_before=before["receive_lsn"])
    started = time.monotonic()
    conn.execute("SELECT pg_promote(wait => false)")
    result["changed"] = True

    def out_of_recovery():
        return not query_one(conn, "SELECT pg_is_in_recovery() AS r")["r"]

    try:
        wait_for(out_of_recovery, p["wait_timeout"], what="end of recovery")
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
        module.warn("the new primary has default_transaction_read_only on (fenced earlier?): clients cannot write "
                    "until it is unfenced (erlmcp.dr.pg_fence state=unfenced method=read_only)")


def already_primary(module, target, old, result):
    p = module.params
    result.update(role="primary", timeline_after=target["timeline"], lsn_after=target["current_lsn"])
    if old and old["reachable"] and old["role"] == "primary":
        module.warn("the old primary %s:%s is a primary too (read-only: %s): two primaries"
                    % (old["host"], old["port"], old["read_only"]))
    if p["expected_timeline"] is not None and target["timeline"] != p["expected_timeline"]:
        module.fail_json(msg="%s already is a primary, but on timeline %s, expected %s (expected_timeline)"
                         % (endpoint(connection_params(p)), target["timeline"], p["expected_timeline"]), **result)
    result["msg"] = "%s already is a primary on timeline %s" % (endpoint(connection_params(p)), target["timeline"])
    module.exit_json(**result)


def the_old_primary_itself(params, old, target_identity):
    if not params["primary_host"]:
        return False
    if (params["login_host"], params["login_port"]) == (params["primary_host"], params["primary_port"]):
        return True
    return bool(old and old.get("identity") == target_identity)


def validate(module):
    p = module.params
    if p["primary_final_lsn"]:
        try:
            parse_lsn(p["primary_final_lsn"])
        except ValueError:
            module.fail_json(msg="primary_final_lsn %r is not an LSN like 0/3000148" % p["primary_final_lsn"])
    for name in ("max_lag_bytes", "catchup_timeout", "wait_timeout"):
        if p[name] < 0:
            module.fail_json(msg="%s must be 0 or more, got %s" % (name, p[name]))


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if PSYCOPG_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=str(PSYCOPG_IMPORT_ERROR))
    validate(module)
    p = module.params
    result = dict(changed=False, promoted=False, would_promote=False, checks=[], old_primary=None,
                  fence_command_rc=None, lag_bytes=None, lost_bytes_max=None, reference_lsn=None,
                  catchup_seconds=0.0, promote_seconds=None, timeline_after=None, lsn_after=None)
    where = endpoint(connection_params(p))
    try:
        conn = connect(connection_params(p), APPLICATION_NAME)
    except PgError as exc:
        result["checks"] = [dict(name="target_is_standby", ok=False, found=str(exc), expected="a reachable standby",
                                 override=None, overridden=False)]
        module.fail_json(msg="cannot promote %s, nothing was changed: %s" % (where, exc), **result)
    try:
        with conn:
            target = node_state(conn)
            result.update(timeline_before=target["timeline"], lsn_before=target["replay_lsn"],
                          receive_lsn_before=target["receive_lsn"], system_identifier=target["system_identifier"],
                          role=target["role"])
            old = ask_old_primary(p)
            if the_old_primary_itself(p, old, identity(conn)):
                module.fail_json(msg="%s is the primary you are failing away from (primary_host/primary_port): point "
                                     "login_host/login_port at a standby" % where, **result)
            result["old_primary"] = dict((k, v) for k, v in (old or {}).items() if k != "identity") or None
            if not target["in_recovery"]:
                already_primary(module, target, old, result)
            checks = run_checks(module, conn, target, old, result)
            result["checks"] = checks.items
            if checks.blocking():
                raise Refused(checks.message(where))
            forced = [c["name"] for c in checks.items if c["overridden"]]
            if forced:
                module.warn("force overrode the failed checks: %s" % ", ".join(forced))
            if module._diff:
                result["diff"] = dict(before=dict(role="standby", timeline=target["timeline"]),
                                      after=dict(role="primary", timeline="%s or later" % (target["timeline"] + 1)))
            runs_fence = bool(p["fence_command"]) and not (old and old["reachable"])
            if module.check_mode:
                result.update(changed=True, would_promote=True,
                              msg="would promote %s%s" % (where, " after running fence_command" if runs_fence else ""))
                module.exit_json(**result)
            if runs_fence:
                run_fence_command(module, result)
            promote(module, conn, target, result)
    except Refused as exc:
        module.fail_json(msg=str(exc), **result)
    except PgError as exc:
        module.fail_json(msg=str(exc), **result)
    except psycopg.Error as exc:
        module.fail_json(msg="PostgreSQL error on %s: %s" % (where, str(exc).strip()), **result)
    if p["expected_timeline"] is not None and result["timeline_after"] != p["expected_timeline"]:
        module.fail_json(msg="promoted %s to timeline %s, expected %s (expected_timeline)"
                         % (where, result["timeline_after"], p["expected_timeline"]), **result)
    if module._diff:
        result["diff"]["after"]["timeline"] = result["timeline_after"]
    result["msg"] = "promoted %s: timeline %s -> %s" % (where, result["timeline_before"], result["timeline_after"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
