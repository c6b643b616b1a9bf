# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure decisions of the database runbooks: what is missing from the end state, and why not.

Input is what erlmcp.dr.pg_replication_info returns (its `nodes` dict); no database access
here, so every branch is unit-tested. A runbook's parameters name an END STATE (switchover: the
candidate is the only writable primary and every other member streams from it); a plan compares
the live cluster with it and lists only what is missing, so a run killed at any step is finished
by running it again, and a run over the end state changes nothing.

Every plan returns the same shape:
  action      'promote' (fence, promote, then repoint) | 'converge' (only repoint: the primary is
              already the right one) | 'none' (the end state holds) | 'refuse' (nothing may change)
  old_primary the node being left (failover: away_from; switchover: the live or former primary)
  candidate   the node that is, or is to become, the primary
  fence       the node to fence before promoting (None when nothing is to be fenced)
  promote     whether the candidate is to be promoted
  follow      members to make stream from the candidate afterwards
  left_out    [{node, why}] members the run will not touch (unreachable, say): the summary warns
  reason      one sentence for the operator
  lag_bytes   the candidate's lag behind the live primary, when known (pg_promote gates on it again)
  timeline    the live (or old) primary's timeline, when known
  system_identifier  the cluster's identity (what the run lock is keyed by)
  warnings    things worth showing that do not change the action
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import parse_lsn

DEFAULT_MAX_LAG_BYTES = 1048576


# ---------------------------------------------------------------- node facts


def _nodes(info):
    nodes = (info or {}).get("nodes") or {}
    if isinstance(nodes, list):  # tolerate a list of facts carrying their name
        nodes = dict((n.get("name"), n) for n in nodes)
    return nodes


def is_writable(node):
    """A reachable primary that takes writes (a read-only fenced primary does not)."""
    return bool(node.get("reachable")) and node.get("role") == "primary" and not node.get("read_only")


def is_fenced_primary(node):
    return bool(node.get("reachable")) and node.get("role") == "primary" and bool(node.get("read_only"))


def is_standby(node):
    return bool(node.get("reachable")) and node.get("role") == "standby"


def is_stopped(node):
    """Unreachable because nothing listens (its host answers): a stopped server the runbook may start."""
    if node.get("reachable"):
        return False
    kind = node.get("error_kind")
    if kind:
        return kind == "refused"
    return "connection refused" in str(node.get("error") or "").lower()


def writable_primaries(info):
    """Names of the nodes taking writes (sorted); more than one = split brain."""
    return sorted(name for name, n in _nodes(info).items() if is_writable(n))


# Kept for callers of the first release: the live primaries are the writable ones.
live_primaries = writable_primaries


def position(node):
    """How far a node has WAL: the highest of its receive, replay and current LSN, as bytes (or -1)."""
    known = [parse_lsn(node.get(k)) for k in ("receive_lsn", "replay_lsn", "current_lsn") if node.get(k)]
    return max(known) if known else -1


def streams_from(node, primary, sysid=None):
    """The node is a standby streaming from `primary` right now (matched by endpoint, same cluster)."""
    return (is_standby(node) and bool(node.get("streaming")) and node.get("upstream") == primary
            and _same_cluster(node, sysid))


def configured_upstream(nodes, name):
    """The member a standby is configured to follow (primary_conninfo), streaming or not; None if unknown.

    A promoted node keeps its last primary_conninfo, so for a fresh primary this names the node it
    was promoted away from: how a re-run finds the old primary of a switchover that was killed.
    """
    node = nodes.get(name) or {}
    named = node.get("configured_upstream")
    if named in nodes and named != name:
        return named
    host, port = node.get("configured_upstream_host"), node.get("configured_upstream_port")
    if not host or not port:
        return None
    for other, facts in sorted(nodes.items()):
        if other != name and str(facts.get("host")) == str(host) and str(facts.get("port")) == str(port):
            return other
    return None


def cluster_identity(nodes, preferred=()):
    """The cluster's system identifier: the writable primary's, a preferred node's, else the most common."""
    for name in writable_sorted(nodes) + list(preferred):
        sysid = (nodes.get(name) or {}).get("system_identifier")
        if sysid:
            return str(sysid)
    counts = {}
    for node in nodes.values():
        if node.get("reachable") and node.get("system_identifier"):
            key = str(node["system_identifier"])
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return None
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def writable_sorted(nodes):
    return sorted(name for name, n in nodes.items() if is_writable(n))


def _same_cluster(node, sysid):
    return sysid is None or not node.get("system_identifier") or str(node.get("system_identifier")) == sysid


def foreign_nodes(nodes, sysid):
    """Reachable members whose system identifier is not the cluster's: the inventory is wrong."""
    return sorted(name for name, n in nodes.items()
                  if n.get("reachable") and n.get("system_identifier") and not _same_cluster(n, sysid))


def _why_unreachable(name, node):
    return "%s is unreachable (%s)" % (name, node.get("error") or "no answer")


def _why_not_standby(name, node):
    if not node.get("reachable"):
        return _why_unreachable(name, node)
    if is_fenced_primary(node):
        return "%s is a fenced (read-only) primary, not a standby" % name
    return "%s is not a standby (role: %s)" % (name, node.get("role"))


def healthy_standbys(info, exclude=(), sysid=None):
    """Reachable standbys, replay not paused, same cluster: best (most WAL) first, ties by name."""
    nodes = _nodes(info)
    names = [name for name, n in nodes.items()
             if name not in exclude and is_standby(n) and not n.get("replay_paused") and _same_cluster(n, sysid)]
    return sorted(names, key=lambda name: (-position(nodes[name]), name))


# ---------------------------------------------------------------- the plan shape


def _plan(action, reason, old_primary=None, candidate=None, fence=None, promote=False, follow=None,
          left_out=None, lag_bytes=None, timeline=None, sysid=None, warnings=None):
    follow = sorted(follow or [])
    return dict(action=action, reason=reason, old_primary=old_primary, candidate=candidate, fence=fence,
                promote=promote, follow=follow, others=[n for n in follow if n != old_primary],
                left_out=left_out or [], lag_bytes=lag_bytes, timeline=timeline, system_identifier=sysid,
                warnings=warnings or [])


def _refuse(reason, **facts):
    return _plan("refuse", reason, **facts)


def _split_brain(writers):
    return _refuse("split brain: %s all take writes; fence all but one (erlmcp.dr.pg_fence), then run "
                   "database_rejoin" % " and ".join(writers))


def _foreign(nodes, sysid):
    foreign = foreign_nodes(nodes, sysid)
    if not foreign:
        return None
    listing = ", ".join("%s (system identifier %s)" % (n, nodes[n].get("system_identifier")) for n in foreign)
    return _refuse("%s belong%s to another cluster than %s: remove %s from the inventory's postgres group or "
                   "re-clone %s; nothing was changed" % (listing, "s" if len(foreign) == 1 else "", sysid,
                                                         "it" if len(foreign) == 1 else "them",
                                                         "it" if len(foreign) == 1 else "them"), sysid=sysid)


def _cluster_gate(info, nodes, preferred):
    """What refuses any promotion, whatever the parameters: two writers, or a member of another cluster.

    Returns (writers, system identifier, refusal plan or None)."""
    writers = writable_primaries(info)
    if len(writers) > 1:
        return writers, None, _split_brain(writers)
    sysid = cluster_identity(nodes, preferred=[preferred])
    return writers, sysid, _foreign(nodes, sysid)


def _repoint(nodes, primary, sysid, keep=(), rejoin=()):
    """Members to make stream from `primary`, and those left out with why.

    keep: members whose current state is part of the end state already (a failover's fenced old
    primary); rejoin: members to bring back even when stopped (a switchover's old primary).
    Reachable members that do not stream from the primary are repointed; stopped or unreachable
    ones are left out (and warned about), never started behind the operator's back.
    """
    follow, left_out = [], []
    for name in sorted(nodes):
        node = nodes[name]
        if name == primary or name in keep or streams_from(node, primary, sysid):
            continue
        if node.get("reachable") or name in rejoin:
            follow.append(name)
        else:
            left_out.append(dict(node=name, why=_why_unreachable(name, node)))
    return follow, left_out


def _left_out_warnings(left_out):
    return ["%s is left out: %s" % (item["node"], item["why"]) for item in left_out]


# ---------------------------------------------------------------- failover


def _choose_candidate(nodes, away_from, candidate, sysid, force, warnings):
    """(chosen name, None) or (None, refusal plan)."""
    common = dict(old_primary=away_from, candidate=candidate, sysid=sysid)
    if candidate is None:
        best = healthy_standbys({"nodes": nodes}, exclude=(away_from,), sysid=sysid)
        if best:
            return best[0], None
        details = "; ".join(_standby_problem(name, nodes[name], sysid) for name in sorted(nodes) if name != away_from)
        return None, _refuse("no healthy standby to promote" + (": " + details if details else ""), **common)
    node = nodes.get(candidate)
    if node is None:
        return None, _refuse("candidate %s is not one of the nodes (%s)" % (candidate, ", ".join(sorted(nodes))),
                             **common)
    if candidate == away_from:
        return None, _refuse("candidate %s is the node you are failing over away from" % candidate, **common)
    if not is_standby(node):
        return None, _refuse("candidate " + _why_not_standby(candidate, node), **common)
    if node.get("replay_paused"):
        if not force:
            return None, _refuse("replay is paused on candidate %s: resume it (SELECT pg_wal_replay_resume()), "
                                 "choose another candidate, or set force" % candidate, **common)
        warnings.append("replay is paused on %s (force)" % candidate)
    return candidate, None


def _standby_problem(name, node, sysid):
    if not is_standby(node):
        return _why_not_standby(name, node)
    if node.get("replay_paused"):
        return "%s has replay paused" % name
    if not _same_cluster(node, sysid):
        return "%s belongs to another cluster (system identifier %s)" % (name, node.get("system_identifier"))
    return "%s is usable" % name


def _lag_gate(nodes, chosen, away_from, max_lag_bytes, force, warnings, **common):
    """(lag behind the old primary or None, None) or (lag, refusal plan). An old primary that cannot be asked: the
    candidate is held to the same budget against the most advanced other standby."""
    lag = nodes[chosen].get("lag_bytes")
    behind, ahead = lag, away_from
    if lag is None:
        behind, ahead = _behind_most_advanced_peer(nodes, chosen, away_from, common.get("sysid"), warnings)
    if behind is None or max_lag_bytes is None or behind <= max_lag_bytes:
        return lag, None
    over = "%s is %s bytes behind %s, more than max_lag_bytes %s (the RPO budget)" % (
        chosen, behind, ahead, max_lag_bytes)
    if ahead != away_from:
        remedy = ": choose %s (candidate=%s), or set force (what only %s has is lost)" % (ahead, ahead, ahead)
    else:
        remedy = ": wait for it to catch up, choose another candidate, or set force (writes past its LSN are lost)"
    if not force:
        return lag, _refuse(over + remedy, lag_bytes=lag, **common)
    warnings.append(over + " (force)")
    return lag, None


def _behind_most_advanced_peer(nodes, chosen, away_from, sysid, warnings):
    """(bytes, node) the candidate is behind the most advanced other standby of the cluster, or (None, None).

    When the old primary's position cannot be read (it is down), the most advanced standby is the best known
    reference: with synchronous replication every acknowledged commit is on at least one standby, so a requested
    candidate behind another standby would lose acknowledged writes that standby has.
    """
    peers = [name for name, node in nodes.items() if name not in (chosen, away_from) and node.get("reachable")
             and is_standby(node) and _same_cluster(node, sysid) and position(node) >= 0]
    if not peers or position(nodes[chosen]) < 0:
        return None, None
    best = max(sorted(peers), key=lambda name: position(nodes[name]))
    behind = max(position(nodes[best]) - position(nodes[chosen]), 0)
    if behind:
        warnings.append("%s cannot be asked for its position; %s is %s bytes behind %s, the most advanced standby: "
                        "promoting it loses what only %s has" % (away_from, chosen, behind, best, best))
    return behind, best


def failover_plan(info, away_from, candidate=None, max_lag_bytes=DEFAULT_MAX_LAG_BYTES, force=False,
                  fence_method="stop", primary_confirmed_down=False):
    """End state: a node other than `away_from` is the only writable primary, `away_from` is fenced
    (stopped, unreachable or read-only) or streams from it, and every other reachable member streams from it.

    'refuse' before anything is fenced when: split brain, a member of another cluster, no safe
    candidate, (unless force) a paused or lagging candidate, or `away_from` is up and taking writes
    while fence_method is none (force never overrides that: two writable primaries).
    """
    nodes = _nodes(info)
    if not away_from:
        return _refuse("away_from is not given and the inventory sets no dr_primary_of_record: name the node to fail "
                       "over away from (away_from=NODE)", candidate=candidate)
    if away_from not in nodes:
        return _refuse("%s (away_from) is not one of the nodes (%s)" % (away_from, ", ".join(sorted(nodes)) or "none"),
                       old_primary=away_from, candidate=candidate)
    writers, sysid, refusal = _cluster_gate(info, nodes, preferred=away_from)
    if refusal:
        return refusal
    if writers and writers[0] != away_from:
        return _already_failed_over(nodes, writers[0], away_from, candidate, sysid)

    warnings = []
    chosen, refusal = _choose_candidate(nodes, away_from, candidate, sysid, force, warnings)
    if refusal:
        return refusal
    common = dict(old_primary=away_from, candidate=chosen, sysid=sysid)
    lag, refusal = _lag_gate(nodes, chosen, away_from, max_lag_bytes, force, warnings, **common)
    if refusal:
        return refusal
    old = nodes[away_from]
    if is_writable(old) and fence_method == "none":
        return _refuse("%s is up and taking writes, and fence_method is none: promoting %s would make two writable "
                       "primaries; fence it (fence_method=stop or read_only). force does not override this"
                       % (away_from, chosen), lag_bytes=lag, **common)
    if not old.get("reachable") and fence_method == "none" and not primary_confirmed_down:
        return _refuse("%s cannot be asked (%s) and fence_method is none: confirm it is down and will stay down "
                       "(primary_confirmed_down=true) or fence it (fence_method=stop)"
                       % (away_from, old.get("error") or "no answer"), lag_bytes=lag, **common)
    fence = None if fence_method == "none" else away_from
    follow, left_out = _repoint(nodes, chosen, sysid, keep=(away_from,))
    state = "down" if not old.get("reachable") else ("fenced read-only" if is_fenced_primary(old) else old.get("role"))
    return _plan("promote", "promote %s (%s) to replace %s (%s)"
                 % (chosen, "requested" if candidate else "most advanced healthy standby", away_from, state),
                 fence=fence, promote=True, follow=follow, left_out=left_out, lag_bytes=lag,
                 timeline=old.get("timeline"), warnings=warnings + _left_out_warnings(left_out), **common)


def _already_failed_over(nodes, live, away_from, candidate, sysid):
    """Another node already takes writes: finish what is missing around it, never promote again."""
    warnings = []
    if candidate and candidate != live:
        warnings.append("%s already is the primary (you asked for %s): not promoting %s; move the primary with "
                        "database_switchover" % (live, candidate, candidate))
    follow, left_out = _repoint(nodes, live, sysid, keep=(away_from,))
    timeline = nodes[live].get("timeline")
    common = dict(old_primary=away_from, candidate=live, follow=follow, left_out=left_out, timeline=timeline,
                  sysid=sysid, warnings=warnings + _left_out_warnings(left_out))
    if follow:
        return _plan("converge", "%s already is the primary on timeline %s: make %s stream from it"
                     % (live, timeline, ", ".join(follow)), **common)
    return _plan("none", "already failed over: %s is the primary on timeline %s" % (live, timeline), **common)


# ---------------------------------------------------------------- switchover


def switchover_plan(info, candidate, max_lag_bytes=None, primary_of_record=None):
    """End state: `candidate` is the only writable primary and every other member streams from it
    (the old primary rejoined as a standby).

    From a healthy cluster: fence the primary, promote, rejoin. From what a killed run leaves
    behind: the old primary stopped and the candidate still a standby (promote after reading the
    old primary's final LSN), or the candidate promoted with members not yet following (converge).
    """
    nodes = _nodes(info)
    if candidate not in nodes:
        return _refuse("candidate %s is not one of the nodes (%s)" % (candidate, ", ".join(sorted(nodes))),
                       candidate=candidate)
    writers, sysid, refusal = _cluster_gate(info, nodes, preferred=candidate)
    if refusal:
        return refusal
    old = configured_upstream(nodes, candidate) or (primary_of_record if primary_of_record in nodes else None)
    if old == candidate:
        old = None
    if writers == [candidate]:
        return _switched_over(nodes, candidate, old, sysid)
    if writers:
        return _switch_from_live_primary(nodes, writers[0], candidate, max_lag_bytes, sysid)
    return _switch_from_fenced_primary(nodes, old, candidate, sysid)


def _switched_over(nodes, candidate, old, sysid):
    rejoin = (old,) if old and is_stopped(nodes[old]) else ()
    follow, left_out = _repoint(nodes, candidate, sysid, rejoin=rejoin)
    timeline = nodes[candidate].get("timeline")
    common = dict(old_primary=old, candidate=candidate, follow=follow, left_out=left_out, timeline=timeline,
                  sysid=sysid, warnings=_left_out_warnings(left_out))
    if follow:
        return _plan("converge", "%s already is the primary on timeline %s: make %s stream from it"
                     % (candidate, timeline, ", ".join(follow)), **common)
    return _plan("none", "%s already is the primary on timeline %s" % (candidate, timeline), **common)


def _switch_from_live_primary(nodes, primary, candidate, max_lag_bytes, sysid):
    node = nodes[candidate]
    common = dict(old_primary=primary, candidate=candidate, timeline=nodes[primary].get("timeline"), sysid=sysid)
    if not is_standby(node):
        return _refuse("candidate " + _why_not_standby(candidate, node), **common)
    if not streams_from(node, primary, sysid):
        return _refuse("candidate %s is not streaming from the primary %s (upstream: %s, receiver: %s)"
                       % (candidate, primary, node.get("upstream"), node.get("receiver_status")), **common)
    if node.get("replay_paused"):
        return _refuse("replay is paused on %s: it could not catch up to the old primary's final LSN "
                       "(SELECT pg_wal_replay_resume() on it first)" % candidate, **common)
    lag = node.get("lag_bytes")
    if lag is not None and max_lag_bytes is not None and lag > max_lag_bytes:
        return _refuse("candidate %s is %s bytes behind %s, more than max_lag_bytes %s: it would not catch up "
                       "within catchup_timeout; wait, or raise max_lag_bytes"
                       % (candidate, lag, primary, max_lag_bytes), lag_bytes=lag, **common)
    follow, left_out = _repoint(nodes, candidate, sysid, rejoin=(primary,))
    follow = sorted(set(follow) | {primary})
    return _plan("promote", "switch over from %s to %s" % (primary, candidate), fence=primary, promote=True,
                 follow=follow, left_out=left_out, lag_bytes=lag, warnings=_left_out_warnings(left_out), **common)


def _switch_from_fenced_primary(nodes, old, candidate, sysid):
    """No writable primary: carry on only when the candidate's own upstream is a stopped or fenced primary."""
    node = nodes[candidate]
    unreachable = ["%s: %s" % (name, nodes[name].get("error") or "no answer")
                   for name in sorted(nodes) if not nodes[name].get("reachable")]
    seen = (" (" + "; ".join(unreachable) + ")") if unreachable else ""
    if not is_standby(node):
        return _refuse("no node takes writes%s and candidate %s: a switchover needs the old primary; use "
                       "database_failover" % (seen, _why_not_standby(candidate, node)),
                       candidate=candidate, sysid=sysid)
    if old is None or not (is_stopped(nodes[old]) or is_fenced_primary(nodes[old])):
        return _refuse("no node takes writes%s and %s's upstream %s is not a stopped or fenced primary: there is no "
                       "old primary to switch over from; use database_failover" % (
                           seen, candidate, old or "is unknown"), candidate=candidate, sysid=sysid)
    follow, left_out = _repoint(nodes, candidate, sysid, rejoin=(old,))
    follow = sorted(set(follow) | {old})
    return _plan("promote", "finish the switchover from %s (%s) to %s" % (
        old, "stopped" if is_stopped(nodes[old]) else "fenced read-only", candidate),
        old_primary=old, candidate=candidate, fence=old, promote=True, follow=follow, left_out=left_out,
        lag_bytes=node.get("lag_bytes"), timeline=nodes[old].get("timeline") or node.get("timeline"), sysid=sysid,
        warnings=_left_out_warnings(left_out))


# ---------------------------------------------------------------- rejoin


def _rejoin(action, reason, primary=None, nodes=(), sysid=None, left_out=()):
    """The rejoin plan: the common plan shape (candidate = the primary, follow = the nodes), plus
    `primary` and `nodes`, the names its first release used."""
    plan = _plan(action, reason, candidate=primary, follow=list(nodes), left_out=list(left_out), sysid=sysid)
    plan.update(primary=primary, nodes=sorted(nodes))
    return plan


def rejoin_plan(info, node=None):
    """Which members must be made to stream from the one writable primary.

    'none' when they all stream from it already; 'refuse' without exactly one writable primary
    (or when `node` is not a member, is the primary, or belongs to another cluster); else
    'rejoin' the members that do not stream from it (stopped ones included: the module works on
    their host; fenced read-only primaries included: they take no writes).
    """
    nodes = _nodes(info)
    if node is not None and node not in nodes:
        return _rejoin("refuse", "%s is not one of the nodes (%s)" % (node, ", ".join(sorted(nodes))))
    writers = writable_primaries(info)
    if node is not None and node in writers and len(writers) == 2:
        writers = [name for name in writers if name != node]  # rejoining the stray second primary
    if len(writers) != 1:
        return _rejoin("refuse", "split brain: %s all take writes; name the one to rejoin with node="
                       % " and ".join(writers) if writers else "no node takes writes: fail over first "
                       "(database_failover)")
    primary = writers[0]
    sysid = cluster_identity(nodes)
    if node == primary:
        return _rejoin("refuse", "%s is the primary; nothing to rejoin it to" % node, primary, sysid=sysid)
    wanted = [node] if node else sorted(name for name in nodes if name != primary)
    foreign = [name for name in wanted if name in foreign_nodes(nodes, sysid)]
    if foreign:
        verb = "belongs" if len(foreign) == 1 else "belong"
        reason = ("%s %s to another cluster than %s (system identifier %s): re-clone with pg_basebackup or fix the "
                  "inventory" % (", ".join(foreign), verb, primary, sysid))
        return _rejoin("refuse", reason, primary, sysid=sysid)
    todo = [name for name in wanted if not streams_from(nodes[name], primary, sysid)]
    untouched = [dict(node=name, why="not asked for (node=%s)" % node)
                 for name in sorted(nodes) if name not in wanted and name != primary]
    if not todo:
        verb = "streams" if len(wanted) == 1 else "stream"
        return _rejoin("none", "%s already %s from %s" % (", ".join(wanted), verb, primary), primary, sysid=sysid,
                       left_out=untouched)
    return _rejoin("rejoin", "make %s stream from %s" % (", ".join(todo), primary), primary, todo, sysid=sysid,
                   left_out=untouched)


# ---------------------------------------------------------------- the end state, checked after a run


def end_state(info, primary, fenced_ok=(), left_out=()):
    """Does the end state hold? {ok, problems}: `primary` is the only writable primary and every
    other member streams from it, except members in fenced_ok that are not writable (a failover's
    fenced old primary) and members in left_out (warned about when planned)."""
    nodes = _nodes(info)
    problems = []
    writers = writable_primaries(info)
    if writers != [primary]:
        problems.append("the writable primaries are %s, expected only %s" % (", ".join(writers) or "none", primary))
    sysid = cluster_identity(nodes, preferred=[primary])
    for name in sorted(nodes):
        if name == primary or name in left_out or streams_from(nodes[name], primary, sysid):
            continue
        if name in fenced_ok and not is_writable(nodes[name]):
            continue
        node = nodes[name]
        state = _why_unreachable(name, node) if not node.get("reachable") else "%s is a %s%s" % (
            name, "fenced primary" if is_fenced_primary(node) else node.get("role"),
            "" if node.get("role") != "standby" else " streaming from %s" % (node.get("upstream") or "nothing"))
        problems.append("%s, expected it to stream from %s" % (state, primary))
    return dict(ok=not problems, problems=problems, primary=primary)


def writes_wait(info, primary):
    """Why `primary` acknowledges no write, or None: it asks for synchronous standbys (synchronous_standby_names)
    and no standby streams from it as one (sync_state sync or quorum). The end state can hold while this is so (every
    standby lost with the old primary's region): the run warns, it does not fail."""
    node = _nodes(info).get(primary) or {}
    wanted = (node.get("synchronous_standby_names") or "").strip()
    if not wanted or node.get("role") != "primary":
        return None
    if any((row or {}).get("sync_state") in ("sync", "quorum") for row in node.get("replicas") or []):
        return None
    return ("%s takes no write: it asks for a synchronous standby (synchronous_standby_names = '%s') and none streams "
            "from it; writes wait until one does (start or repoint a standby), or set synchronous_standby_names = '' "
            "on it (commits then acknowledged by the primary alone)" % (primary, wanted))


def lock_key(info):
    """What the run lock is keyed by: the cluster's system identifier (two inventories of one cluster
    share it); when no member answers, the sorted member endpoints, the best identity left."""
    nodes = _nodes(info)
    sysid = (info or {}).get("system_identifier") or cluster_identity(nodes)
    if sysid:
        return "postgres:%s" % sysid
    endpoints = sorted("%s:%s" % (n.get("host"), n.get("port")) for n in nodes.values())
    return "postgres-endpoints:%s" % ",".join(endpoints)
