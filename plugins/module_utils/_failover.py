# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure decision logic for failover and switchover: which node to promote, or why not.

Input is what erlmcp.dr.pg_replication_info returns (its `nodes` dict, and optionally its
`primary` / `primaries`); no database access here, so every branch is unit-tested.

Both plans return the same shape:
  action      'promote' | 'none' | 'refuse'
  old_primary the node being left (failover: away_from; switchover: the live primary)
  candidate   the node to promote (None when refused for lack of one)
  others      the remaining reachable standbys, to repoint afterwards
  reason      one sentence for the operator
  lag_bytes   the candidate's lag behind the live primary, when known (the gate is pg_promote's)
  timeline    the live primary's timeline, when known
  warnings    things worth showing that do not change the action
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import parse_lsn

DEFAULT_MAX_LAG_BYTES = 1048576


def _nodes(info):
    nodes = (info or {}).get("nodes") or {}
    if isinstance(nodes, list):  # tolerate a list of facts carrying their name
        nodes = dict((n.get("name"), n) for n in nodes)
    return nodes


def live_primaries(info):
    """Names of reachable nodes that are not in recovery (sorted); more than one = split brain."""
    given = (info or {}).get("primaries")
    if given is not None:
        return sorted(given)
    return sorted(name for name, n in _nodes(info).items() if n.get("reachable") and n.get("role") == "primary")


def position(node):
    """How far a standby has WAL: the higher of its receive and replay LSN, as bytes (or -1)."""
    known = [parse_lsn(node.get(k)) for k in ("receive_lsn", "replay_lsn", "current_lsn") if node.get(k)]
    return max(known) if known else -1


def is_standby(node):
    return bool(node.get("reachable")) and node.get("role") == "standby"


def _plan(action, reason, old_primary=None, candidate=None, others=None, lag_bytes=None, timeline=None,
          warnings=None):
    return dict(action=action, reason=reason, old_primary=old_primary, candidate=candidate,
                others=sorted(others or []), lag_bytes=lag_bytes, timeline=timeline, warnings=warnings or [])


def _reference_sysid(nodes, preferred):
    """The cluster's system identifier: the preferred node's if known, else the most common one."""
    for name in preferred:
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


def _same_cluster(node, sysid):
    return sysid is None or str(node.get("system_identifier")) == sysid


def _why_not_standby(name, node):
    if not node.get("reachable"):
        return "%s is unreachable (%s)" % (name, node.get("error") or "no answer")
    return "%s is not a standby (role: %s)" % (name, node.get("role"))


def _others(nodes, exclude):
    return [name for name, n in nodes.items() if name not in exclude and is_standby(n)]


def healthy_standbys(info, exclude=(), sysid=None):
    """Reachable standbys, replay not paused, same cluster: best (most WAL) first, ties by name."""
    nodes = _nodes(info)
    names = [name for name, n in nodes.items()
             if name not in exclude and is_standby(n) and not n.get("replay_paused") and _same_cluster(n, sysid)]
    return sorted(names, key=lambda name: (-position(nodes[name]), name))


def failover_plan(info, away_from, candidate=None, max_lag_bytes=DEFAULT_MAX_LAG_BYTES, force=False):
    """Plan promoting a standby so that `away_from` stops being the primary.

    'none' when another node already is the only live primary; 'refuse' on split brain, an
    unusable candidate, no healthy standby, or (unless force) a candidate whose replay is
    paused or whose lag exceeds max_lag_bytes: this is the gate before anything is fenced.
    Else 'promote' the requested candidate or the most advanced healthy standby.
    """
    nodes = _nodes(info)
    if away_from not in nodes:
        return _plan("refuse", "%s is not one of the nodes (%s)" % (away_from, ", ".join(sorted(nodes)) or "none"),
                     old_primary=away_from, candidate=candidate)
    primaries = live_primaries(info)
    if len(primaries) > 1:
        return _plan("refuse", "split brain: %s are all primaries; fence all but one by hand before failing over"
                     % " and ".join(primaries), old_primary=away_from, candidate=candidate)
    if primaries and primaries[0] != away_from:
        live = primaries[0]
        timeline = nodes[live].get("timeline")
        return _plan("none", "already failed over: %s is the primary on timeline %s" % (live, timeline),
                     old_primary=away_from, candidate=live, others=_others(nodes, (live, away_from)),
                     timeline=timeline)

    sysid = _reference_sysid(nodes, [away_from])
    warnings = []
    if candidate is not None:
        node = nodes.get(candidate)
        if node is None:
            return _plan("refuse", "candidate %s is not one of the nodes (%s)" % (candidate, ", ".join(sorted(nodes))),
                         old_primary=away_from, candidate=candidate)
        if candidate == away_from:
            return _plan("refuse", "candidate %s is the node you are failing over away from" % candidate,
                         old_primary=away_from, candidate=candidate)
        if not is_standby(node):
            return _plan("refuse", "candidate " + _why_not_standby(candidate, node),
                         old_primary=away_from, candidate=candidate)
        if not _same_cluster(node, sysid):
            return _plan("refuse", "candidate %s belongs to another cluster (system identifier %s, expected %s)"
                         % (candidate, node.get("system_identifier"), sysid),
                         old_primary=away_from, candidate=candidate)
        if node.get("replay_paused"):
            if not force:
                return _plan("refuse", "replay is paused on candidate %s: resume it (SELECT pg_wal_replay_resume()), "
                             "choose another candidate, or set force" % candidate,
                             old_primary=away_from, candidate=candidate)
            warnings.append("replay is paused on %s (force)" % candidate)
        chosen = candidate
    else:
        best = healthy_standbys(info, exclude=(away_from,), sysid=sysid)
        if not best:
            unusable = sorted(name for name in nodes if name != away_from)
            details = "; ".join(_standby_problem(name, nodes[name], sysid) for name in unusable)
            return _plan("refuse", "no healthy standby to promote" + (": " + details if details else ""),
                         old_primary=away_from)
        chosen = best[0]

    lag = nodes[chosen].get("lag_bytes")
    if lag is not None and max_lag_bytes is not None and lag > max_lag_bytes:
        over = ("%s is %s bytes behind %s, more than max_lag_bytes %s (the RPO budget)"
                % (chosen, lag, away_from, max_lag_bytes))
        if not force:
            return _plan("refuse", over + ": wait for it to catch up, choose another candidate, or set force "
                         "(writes past its LSN are lost)", old_primary=away_from, candidate=chosen, lag_bytes=lag)
        warnings.append(over + " (force)")
    state = "down" if not nodes[away_from].get("reachable") else nodes[away_from].get("role")
    return _plan("promote", "promote %s (%s) to replace %s (%s)"
                 % (chosen, "requested" if candidate else "most advanced healthy standby", away_from, state),
                 old_primary=away_from, candidate=chosen, others=_others(nodes, (chosen, away_from)),
                 lag_bytes=lag, timeline=nodes[away_from].get("timeline"), warnings=warnings)


def _standby_problem(name, node, sysid):
    if not is_standby(node):
        return _why_not_standby(name, node)
    if node.get("replay_paused"):
        return "%s has replay paused" % name
    if not _same_cluster(node, sysid):
        return "%s belongs to another cluster (system identifier %s)" % (name, node.get("system_identifier"))
    return "%s is usable" % name


def switchover_plan(info, candidate, max_lag_bytes=None):
    """Plan a planned switchover to `candidate`, a streaming standby of the one live primary.

    Refuses (before anything is fenced) a candidate further behind than max_lag_bytes.
    """
    nodes = _nodes(info)
    primaries = live_primaries(info)
    if len(primaries) > 1:
        return _plan("refuse", "split brain: %s are all primaries" % " and ".join(primaries), candidate=candidate)
    if candidate not in nodes:
        return _plan("refuse", "candidate %s is not one of the nodes (%s)" % (candidate, ", ".join(sorted(nodes))),
                     candidate=candidate)
    if primaries == [candidate]:
        timeline = nodes[candidate].get("timeline")
        return _plan("none", "%s already is the primary on timeline %s" % (candidate, timeline),
                     old_primary=None, candidate=candidate, others=_others(nodes, (candidate,)), timeline=timeline)
    if not primaries:
        return _plan("refuse", "no primary is up: a switchover needs a live primary to demote (use a failover)",
                     candidate=candidate)
    primary = primaries[0]
    node = nodes[candidate]
    common = dict(old_primary=primary, candidate=candidate, timeline=nodes[primary].get("timeline"))
    if not is_standby(node):
        return _plan("refuse", "candidate " + _why_not_standby(candidate, node), **common)
    sysid = _reference_sysid(nodes, [primary])
    if not _same_cluster(node, sysid):
        return _plan("refuse", "candidate %s belongs to another cluster (system identifier %s, primary %s has %s)"
                     % (candidate, node.get("system_identifier"), primary, sysid), **common)
    if not node.get("streaming") or node.get("upstream") != primary:
        return _plan("refuse", "candidate %s is not streaming from the primary %s (upstream: %s, receiver: %s)"
                     % (candidate, primary, node.get("upstream"), node.get("receiver_status")), **common)
    if node.get("replay_paused"):
        return _plan("refuse", "replay is paused on %s: it could not catch up to the old primary's final LSN "
                     "(SELECT pg_wal_replay_resume() on it first)" % candidate, **common)
    lag = node.get("lag_bytes")
    if lag is not None and max_lag_bytes is not None and lag > max_lag_bytes:
        return _plan("refuse", "candidate %s is %s bytes behind %s, more than max_lag_bytes %s: it would not catch up "
                     "within catchup_timeout; wait, or raise max_lag_bytes" % (candidate, lag, primary, max_lag_bytes),
                     lag_bytes=lag, **common)
    return _plan("promote", "switch over from %s to %s" % (primary, candidate),
                 others=_others(nodes, (candidate, primary)), lag_bytes=node.get("lag_bytes"), **common)


def _streams_from(node, primary):
    return is_standby(node) and bool(node.get("streaming")) and node.get("upstream") == primary


def rejoin_plan(info, node=None):
    """Which nodes must be made to stream from the one live primary.

    'none' when they all stream from it already; 'refuse' without exactly one live primary
    (or when `node` is not a node, or is the primary); else 'rejoin' the nodes that do not
    stream from it (stopped and unreachable nodes included: the module works on their host).
    """
    nodes = _nodes(info)
    if node is not None and node not in nodes:
        return dict(action="refuse", reason="%s is not one of the nodes (%s)" % (node, ", ".join(sorted(nodes))),
                    primary=None, nodes=[])
    primaries = live_primaries(info)
    if node is not None and node in primaries and len(primaries) == 2:
        primaries = [name for name in primaries if name != node]  # rejoining the stray second primary
    if len(primaries) != 1:
        return dict(action="refuse", primary=None, nodes=[], reason=(
            "split brain: %s are all primaries; name the one to rejoin with node=" % " and ".join(primaries)
            if primaries else "no primary is up: fail over first (database_failover)"))
    primary = primaries[0]
    if node == primary:
        return dict(action="refuse", primary=primary, nodes=[],
                    reason="%s is the primary; nothing to rejoin it to" % node)
    wanted = [node] if node else sorted(name for name in nodes if name != primary)
    todo = [name for name in wanted if not _streams_from(nodes[name], primary)]
    if not todo:
        verb = "streams" if len(wanted) == 1 else "stream"
        return dict(action="none", primary=primary, nodes=[],
                    reason="%s already %s from %s" % (", ".join(wanted), verb, primary))
    return dict(action="rejoin", primary=primary, nodes=todo,
                reason="make %s stream from %s" % (", ".join(todo), primary))
