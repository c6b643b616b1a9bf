# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure decisions of the Redis runbooks (no I/O, no driver import), over the result of redis_info:
the members, the run lock's key, which node a restore or backup acts on, the end state, the summary.

Wrapped as the filters erlmcp.dr.redis_nodes, redis_lock_key, redis_target, redis_end_state,
redis_backup_end_state, redis_summary; erlmcp.dr.redis_begin calls them directly.
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._common.summary import (
    confirmation,
    envelope,
    point_of_no_return_passed,
    recovery_point,
    served,
)


def nodes(hosts, hostvars):
    """One {name, host, port} per inventory host (redis_host, default the host's name; redis_port, default 6379)."""
    result = []
    for name in hosts:
        hv = hostvars[name]
        result.append(dict(name=name, host=str(hv.get("redis_host") or name), port=int(hv.get("redis_port") or 6379)))
    return result


def lock_key(members):
    """`redis:<sorted host:port of every member>`.

    A Redis deployment has no identity that outlives a restore or a promotion: the replication id
    (master_replid) changes on every restart that loads an RDB and on every promotion, the run_id on every
    restart, and any key written into the dataset would be replaced by the restore itself. The members'
    endpoints are what stays: every copy of one inventory maps to one lock, before and after a restore or
    a failover, and the backup, restore and failover runbooks of one deployment exclude each other.
    """
    endpoints = sorted("%s:%s" % (str(m["host"]).lower(), int(m["port"])) for m in members)
    return "redis:%s" % ",".join(endpoints)


def _by_endpoint(info):
    return dict(("%s:%s" % (f.get("host"), f.get("port")), name) for name, f in (info.get("nodes") or {}).items())


def target(info, node=None, purpose="restore"):
    """The node a restore acts on: dict(action, target, reason).

    action is `act` (target named) or `refuse` (reason says why, nothing may change). The target is `node` when
    given (it must be a member), else the one reachable primary; when no primary answers (a restore cut off
    while the server was stopped), the node every reachable replica names as its upstream. Two writable
    primaries are refused: which one holds the data to replace is not this runbook's decision.
    """
    if purpose == "backup":
        return backup_source(info, node)
    members = info.get("nodes") or {}
    primaries = list(info.get("primaries") or [])
    if node:
        if node not in members:
            return _not_a_member(node, members, "node")
        facts = members[node]
        if facts.get("reachable") and facts.get("role") != "primary":
            return _refuse("%s is a replica of %s: a restore goes to the primary and its replicas follow; name the "
                           "primary (node) or leave node out" % (node, facts.get("upstream")))
        others = [p for p in primaries if p != node]
        if others:
            return _refuse("%s takes writes as well as %s: refusing to restore into one of two primaries; make one "
                           "of them a replica first (redis_failover)" % (", ".join(others), node))
        return dict(action="act", target=node, reason="named by the node parameter")
    if len(primaries) > 1:
        return _refuse("more than one Redis node takes writes (%s): refusing to choose which dataset to replace; "
                       "make one of them a replica first (redis_failover) or name one (node)" % ", ".join(primaries))
    if len(primaries) == 1:
        return dict(action="act", target=primaries[0], reason="the one primary")
    upstreams = set()
    by_endpoint = _by_endpoint(info)
    for facts in members.values():
        if facts.get("reachable") and facts.get("role") == "replica":
            upstreams.add(by_endpoint.get("%s:%s" % (facts.get("upstream_host"), facts.get("upstream_port"))))
    if len(upstreams) == 1 and None not in upstreams:
        name = upstreams.pop()
        return dict(action="act", target=name,
                    reason="no primary answers; every reachable replica follows %s" % name)
    return _refuse("no Redis primary answers and the replicas do not agree on one (unreachable: %s): name the node "
                   "to restore (node)" % (", ".join(info.get("unreachable_nodes") or []) or "none"))


def backup_source(info, node=None):
    """The node a backup saves from: `node` when given (a reachable member, primary or replica), else the one
    reachable primary. dict(action, target, reason) as target()."""
    members = info.get("nodes") or {}
    primaries = list(info.get("primaries") or [])
    if node:
        if node not in members:
            return _not_a_member(node, members, "node")
        if not members[node].get("reachable"):
            return _refuse("%s does not answer: %s; name another node (node)" % (node, members[node].get("error")))
        return dict(action="act", target=node, reason="named by the node parameter")
    if len(primaries) == 1:
        return dict(action="act", target=primaries[0], reason="the one primary")
    if primaries:
        return _refuse("more than one Redis node takes writes (%s): name the node to save from (node)"
                       % ", ".join(primaries))
    return _refuse("no Redis primary answers (unreachable: %s): name a replica to save from (node)"
                   % (", ".join(info.get("unreachable_nodes") or []) or "none"))


def failover_candidate(info, candidate=None, away_from=None, recorded_primary=None):
    """The node a failover promotes: dict(action, target, reason, demote). `candidate` when given (a reachable member
    other than away_from); else the one primary; else the reachable replica with the highest replication offset (link
    up first, then name).

    recorded_primary is the primary the application's Redis config names (the last failover's choice). When more
    than one node takes writes, the one it names is kept and the others are returning old primaries (restarted as
    primaries after an unplanned failover, issue 16 row 4): `demote` lists them, with away_from, to be made
    replicas (their writes since their return given up: no client is pointed at them). Without that record the
    run refuses, naming them."""
    members = info.get("nodes") or {}
    if away_from and away_from not in members:
        return _not_a_member(away_from, members, "away_from")
    chosen = _candidate(info, members, candidate, away_from, recorded_primary)
    if chosen["action"] == "act":
        writers = [p for p in info.get("primaries") or [] if p != chosen["target"]]
        returning = writers if chosen["target"] == recorded_primary else []
        chosen["demote"] = sorted(set(returning + ([away_from] if away_from else [])))
    return chosen


def _candidate(info, members, candidate, away_from, recorded_primary):
    if candidate:
        if candidate not in members:
            return _not_a_member(candidate, members, "candidate")
        if candidate == away_from:
            return _refuse("candidate %s is the node to fail away from (candidate, away_from)" % candidate)
        if not members[candidate].get("reachable"):
            return _refuse("candidate %s does not answer: %s (candidate)"
                           % (candidate, members[candidate].get("error")))
        return dict(action="act", target=candidate, reason="named by the candidate parameter")
    primaries = [p for p in info.get("primaries") or [] if p != away_from]
    replicas = [(f.get("link_status") == "up", f.get("repl_offset") or 0, name) for name, f in members.items()
                if name != away_from and f.get("reachable") and f.get("role") == "replica"]
    if len(primaries) > 1:
        if recorded_primary in primaries:
            return dict(action="act", target=recorded_primary,
                        reason="%s is the primary the application's Redis config names; %s take writes beside it (an "
                               "old primary that came back as a primary): made replicas of it"
                        % (recorded_primary, ", ".join(p for p in primaries if p != recorded_primary)))
        return _refuse("more than one Redis node takes writes (%s) and the application's Redis config names none of "
                       "them (it names %s): name the one to keep (candidate) and the one to make its replica "
                       "(away_from)" % (", ".join(primaries), recorded_primary or "no primary"))
    if len(primaries) == 1:
        return dict(action="act", target=primaries[0], reason="%s is the primary already" % primaries[0])
    if not replicas:
        return _refuse("no replica answers to take over%s (candidate)"
                       % (" from %s" % away_from if away_from else ""))
    best = sorted(replicas, key=lambda r: (-r[1], not r[0], r[2]))[0]
    return dict(action="act", target=best[2], reason="the replica with the most data (offset %s)" % best[1])


def recorded_primary(config_text):
    """The primary_node the application's Redis config (app_redis_config's JSON) names, or None when the text is
    empty, not that JSON, or names none."""
    import json

    try:
        found = json.loads(config_text or "")
    except ValueError:
        return None
    primary = (found.get("redis") or {}).get("primary_node") if isinstance(found, dict) else None
    return primary if isinstance(primary, str) and primary else None


def _not_a_member(name, members, option):
    """The refusal of a parameter that names no member of the inventory's redis group."""
    return _refuse("%s %s is not in the inventory's redis group (%s): expected one of them (%s)"
                   % (option, name, ", ".join(sorted(members)), option))


def _refuse(reason):
    return dict(action="refuse", target=None, reason=reason)


def end_state(info, primary, left_out=None):
    """dict(ok, problems): `primary` is the one reachable writable node, AOF on, loaded; every other reachable
    member is a replica of it with its link up. Members in left_out are not checked."""
    left_out = set(left_out or [])
    members = info.get("nodes") or {}
    problems = []
    facts = members.get(primary) or {}
    if not facts.get("reachable"):
        problems.append("%s does not answer: %s" % (primary, facts.get("error")))
    else:
        if facts.get("role") != "primary":
            problems.append("%s is a %s, expected the primary" % (primary, facts.get("role")))
        if facts.get("loading"):
            problems.append("%s is still loading its dataset" % primary)
        if not (facts.get("persistence") or {}).get("aof_enabled"):
            problems.append("%s has AOF off (appendonly no), expected on" % primary)
    for name, other in sorted(members.items()):
        if name == primary or name in left_out or not other.get("reachable"):
            continue
        if other.get("role") != "replica":
            problems.append("%s is a %s as well, expected a replica of %s" % (name, other.get("role"), primary))
        elif other.get("upstream") != primary:
            problems.append("%s follows %s, expected %s" % (name, other.get("upstream"), primary))
        elif other.get("link_status") != "up":
            problems.append("%s has its link to %s %s, expected up" % (name, primary, other.get("link_status")))
    return dict(ok=not problems, problems=problems)


def backup_end_state(stored, backup):
    """dict(ok, problems) of redis_backup's end state: `stored` is erlmcp.dr.redis_backup's read-back of the backup it
    made (`backup`), in check mode. That check finds the backup done (changed false) only when the store holds it
    verified, with the sha256 its metadata records read back from the store (the file, or the checksum S3 keeps)."""
    stored, backup = stored or {}, backup or {}
    problems = []
    if stored.get("failed"):
        problems.append("the store could not be read back: %s" % stored.get("msg"))
    elif stored.get("changed") or not stored.get("verified"):
        problems.append("the store does not hold backup %s verified with sha256 %s (%s)"
                        % (backup.get("backup_id"), backup.get("sha256"), backup.get("path")))
    return dict(ok=not problems, problems=problems)


def summary(runbook, target_plan, steps, completed=False, check_mode=False, meta=None):
    """What a Redis runbook publishes (set_stats key `summary`): the envelope (_summary.envelope) built from what
    its steps returned, never the plan, with Redis's facts under `details`.

    steps: backup / restore / promote / app_config / end_state / lock / guard (redis_guard's `guard`), each a
    registered result or {}.
    meta: the runbook's metadata (vars.runbook: point_of_no_return, rpo_seconds).
    """
    target_plan, meta = target_plan or {}, meta or {}
    steps = dict((k, v or {}) for k, v in (steps or {}).items())
    did = []
    details = dict(node=target_plan.get("target"))
    if steps.get("backup"):
        details.update(_backup_summary(steps["backup"], did))
    if steps.get("restore"):
        details.update(_restore_summary(steps["restore"], did, check_mode))
    if steps.get("promote"):
        details.update(_promote_summary(steps["promote"], did, check_mode))
    if "guard" in steps:
        # The Redis guard this run held, and the token its promotion was re-checked under (the fencing value).
        details.update(guard=steps["guard"].get("token") if steps["guard"].get("held") else None,
                       promoted_under_guard=(steps.get("promote") or {}).get("guard_token"))
    if steps.get("app_config"):
        app = steps["app_config"]
        if app.get("changed") and not app.get("failed") and not check_mode:
            did.append("pointed the application's Redis config %s at %s" % (
                app.get("path"), ((app.get("config") or {}).get("redis") or {}).get("primary_node")))
        details["app_config"] = dict(path=app.get("path"), changed=bool(app.get("changed")),
                                     config=app.get("config"), failed=bool(app.get("failed")))
    restored = details.get("dataset") in ("backup", "rollback_point") and not check_mode
    irreversible = bool(details.get("promoted")) or restored
    lost = details.get("data_loss_seconds") if restored else None
    return envelope(runbook, action=target_plan.get("action"), reason=target_plan.get("reason"), completed=completed,
                    check_mode=check_mode, did=did, end=steps.get("end_state"),
                    lock_key=(steps.get("lock") or {}).get("key"),
                    rollback=[] if not details.get("rollback_dir") else [
                        "the dataset from before the restore is kept in %s" % details["rollback_dir"]],
                    passed_point_of_no_return=point_of_no_return_passed(meta, irreversible), details=details,
                    serving=_serving(details) if steps.get("promote") else None,
                    recovery=recovery_point(lost_seconds=lost, target_seconds=meta.get("rpo_seconds")),
                    plan=_plan_changes(steps, target_plan.get("target")) if check_mode else None)


def _serving(details):
    """The Redis primary before and after a failover: the candidate once promoted, else the old primary."""
    before = details.get("old_primary")
    return served(before, details.get("new_primary") if details.get("promoted") else before)


def _plan_changes(steps, node):
    """The plan shown before the confirmation: what will serve or hold what, and what is given up."""
    will_change, may_lose = [], []
    restore, promote = steps.get("restore") or {}, steps.get("promote") or {}
    if restore.get("changed") and not restore.get("failed"):
        will_change.extend(_restore_changes(restore, node))
        if not restore.get("resumed_from"):
            may_lose.append("every write to %s since the backup was taken (%s ago)"
                            % (node or "the primary", _age(restore.get("data_loss_seconds"))))
    if promote.get("changed") and not promote.get("failed"):
        will_change.extend(_promote_changes(promote))
        if promote.get("would_promote") and promote.get("plan") == "promote":
            may_lose.append("the writes %s acknowledged after its last byte %s received (lag at the gate: %s B)"
                            % (promote.get("old_primary") or "the old primary", promote.get("candidate"),
                               promote.get("lag_bytes_at_gate")))
    return confirmation(will_change=will_change, may_lose=may_lose)


def _restore_changes(result, node):
    if result.get("resumed_from"):
        return ["%s: finish the restore of backup %s cut off at phase %s"
                % (node or "the primary", result.get("backup_id"), result["resumed_from"])]
    backup = result.get("backup") or {}
    return ["dataset of %s: %s -> %s, from backup %s (taken %s ago, %s)" % (
        node or "the primary", _key_count(result.get("keys_before")), _key_count(backup.get("keys_per_db")),
        result.get("backup_id"), _age(result.get("data_loss_seconds")), backup.get("created_at") or "time unknown")]


def _promote_changes(result):
    changes = []
    if result.get("would_promote"):
        if result.get("plan") == "failover":
            how = "Redis's coordinated FAILOVER: writes paused until %s has every byte" % result.get("candidate")
        else:
            how = "%s does not answer" % (result.get("old_primary") or "no primary")
        changes.append("primary: %s -> %s (%s)" % (result.get("old_primary") or "none answering",
                                                   result.get("candidate"), how))
    if result.get("would_repoint"):
        changes.append("replicate from %s: %s" % (result.get("candidate"), ", ".join(result["would_repoint"])))
    return changes


def _key_count(per_db):
    """`1200 keys (db0 1000, db1 200)` from {"db0": 1000, "db1": 200}; `? keys` when unknown."""
    if not isinstance(per_db, dict):
        return "? keys"
    total = sum(int(v) for v in per_db.values())
    detail = ", ".join("%s %s" % (db, n) for db, n in per_db.items())
    return "%d keys%s" % (total, " (%s)" % detail if len(per_db) > 1 else "")


def _age(seconds):
    if seconds is None:
        return "an unknown time"
    seconds = int(seconds)
    if seconds < 120:
        return "%d s" % seconds
    if seconds < 7200:
        return "%d min" % (seconds // 60)
    if seconds < 172800:
        return "%d h %02d min" % (seconds // 3600, seconds % 3600 // 60)
    return "%d days" % (seconds // 86400)


def _promote_summary(result, did, check_mode):
    if result.get("promoted"):
        did.append("made %s the primary (%s)" % (result.get("candidate"), "coordinated FAILOVER from %s"
                                                 % result.get("old_primary") if result.get("fence") == "failover"
                                                 else "%s did not answer" % result.get("old_primary")))
    if result.get("repointed") and not check_mode:
        did.append("made %s replicate from %s" % (", ".join(result["repointed"]), result.get("candidate")))
    if result.get("persisted") and not check_mode:
        did.append("wrote the role %s run into their config files (a run cut off before its CONFIG REWRITE)"
                   % ", ".join(result["persisted"]))
    return dict(new_primary=result.get("candidate"), old_primary=result.get("old_primary"),
                old_primary_fence=result.get("fence"), lag_bytes_at_gate=result.get("lag_bytes_at_gate"),
                promoted=bool(result.get("promoted")), repointed=result.get("repointed") or [],
                persisted=result.get("persisted") or [], unreachable=result.get("unreachable_nodes") or [],
                promote_plan=result.get("plan"),
                durations=result.get("durations") or {})


def _backup_summary(result, did):
    metadata = result.get("metadata") or {}
    if result.get("changed") and not result.get("failed"):
        source = metadata.get("source", {}).get("name") or "the node"
        did.append("backed up %s to %s" % (source, result.get("path")))
    if result.get("deleted"):
        did.append("deleted backups by retention: %s" % ", ".join(result["deleted"]))
    return dict(backup_id=result.get("backup_id"), verified=result.get("verified"), sha256=result.get("sha256"),
                bytes=result.get("size"), keys=result.get("keys_per_db"), path=result.get("path"),
                lastsave=result.get("lastsave"), durations=result.get("durations") or {},
                deleted=result.get("deleted") or [])


def _restore_summary(result, did, check_mode):
    backup = result.get("backup") or {}
    rolled_back = bool(result.get("rolled_back"))
    if check_mode:
        dataset = "unchanged"
    elif rolled_back:
        dataset = "rollback_point"
    elif result.get("failed"):
        dataset = "unknown"
    elif result.get("changed") or result.get("keys_after") is not None:
        dataset = "backup"
    else:
        dataset = "unknown"
    if result.get("resumed_from"):
        did.append("finished a restore cut off at phase %s" % result["resumed_from"])
    if rolled_back:
        did.append("put the dataset from before the restore back (the backup did not verify)")
    elif result.get("changed") and not result.get("failed") and not check_mode:
        did.append("restored backup %s" % result.get("backup_id"))
    return dict(backup_id=result.get("backup_id"), dataset=dataset, rolled_back=rolled_back,
                resumed_from=result.get("resumed_from"), rollback_dir=result.get("rollback_dir"),
                keys_before=result.get("keys_before"), keys_after=result.get("keys_after"),
                bytes=backup.get("size"), sha256=backup.get("sha256"),
                data_loss_seconds=result.get("data_loss_seconds"), durations=result.get("durations") or {},
                replicas=[dict(host=r.get("host"), port=r.get("port"), offset=r.get("offset"))
                          for r in result.get("replicas") or []])
