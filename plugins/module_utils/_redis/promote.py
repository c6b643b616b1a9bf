# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of redis_promote: make one replica the primary, never with two writable primaries, and repoint the
others.

- The old primary answers: Redis's own coordinated FAILOVER (6.2+), run on it - it pauses its writes
  (CLIENT PAUSE WRITE), waits until the candidate has its whole offset (catchup_timeout), then becomes a replica of
  the candidate and hands it the primary role (PSYNC FAILOVER). At no moment do two nodes take writes, and nothing
  acknowledged is lost; when the candidate cannot catch up, Redis aborts and unpauses (nothing changed).
  The lag gate (max_lag_bytes) is checked first, on the offsets.
- No primary answers: the candidate must be the replica with the most data among those that answer (within
  max_lag_bytes of the best; `force` relaxes that, never the single-writer check); right before REPLICAOF NO ONE
  every member is read again and the promotion is refused if any of them takes writes.
- The others (the old primary once it answers again, other replicas) are repointed with REPLICAOF; every node
  changed persists it with CONFIG REWRITE (when it has a config file), so a restart keeps its role. Every run
  (even one with no role to change) persists each answering member's role, so a run cut off between a hand-over
  and its CONFIG REWRITE is finished by the next (a config file seen to change counts as a change: persisted).
Check mode reads and plans only. Once the candidate is the only primary and every answering member follows it,
a run changes nothing.
"""

from __future__ import annotations

import time

from ansible_collections.erlmcp.dr.plugins.module_utils._redis import client as rd
from ansible_collections.erlmcp.dr.plugins.module_utils._guards import redis_guard as _redis_guard
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

POSITIVE = ("wait_timeout", "catchup_timeout", "poll_interval", "connect_timeout")


def run(params, check_mode=False, diff=False, warn=None):
    _validate(params)
    started = time.monotonic()
    members = dict((m["name"], m) for m in params["members"])
    candidate = params["candidate"]
    facts = dict(changed=False, candidate=candidate, promoted=False, old_primary=None, fence=None,
                 lag_bytes_at_gate=None, repointed=[], unreachable_nodes=[], durations={}, guard_token=None)
    with rd.translate_errors(facts, "while promoting %s" % candidate):
        nodes = read_members(params, members)
        facts["before"] = _roles(nodes)
        facts["unreachable_nodes"] = sorted(n for n, f in nodes.items() if not f["reachable"])
        plan = decide(nodes, candidate, params.get("max_lag_bytes"), bool(params.get("force")),
                      params.get("demote") or [])
        facts.update(old_primary=plan["old_primary"], lag_bytes_at_gate=plan["lag_bytes"], plan=plan["action"])
        if plan["action"] == "refuse":
            raise ModuleFailure(plan["reason"], **facts)
        follow = plan["follow"]
        if plan["action"] == "none" and not follow:
            if not check_mode:
                _persist_roles(params, members, nodes, facts)
            facts["after"] = facts["before"]
            return facts
        facts["changed"] = True
        if diff:
            planned = _planned(facts["before"], plan, candidate)
            facts["diff"] = dict(before=_describe(facts["before"]), after=_describe(planned))
        if check_mode:
            facts.update(would_repoint=follow, would_promote=plan["action"] in ("failover", "promote"))
            return facts
        began = time.monotonic()
        if plan["action"] == "failover":
            _coordinated_failover(params, members, plan, facts)
        elif plan["action"] == "promote":
            _promote_alone(params, members, candidate, facts)
        facts["durations"]["promote"] = round(time.monotonic() - began, 3)
        began = time.monotonic()
        facts["repointed"] = _repoint(params, members, candidate, follow)
        facts["durations"]["repoint"] = round(time.monotonic() - began, 3)
        _persist_roles(params, members, nodes, facts)
        facts["after"] = _roles(read_members(params, members))
    facts["durations"]["total"] = round(time.monotonic() - started, 3)
    return facts


def _validate(params):
    rd.check_positive(params, POSITIVE)
    if params.get("max_lag_bytes") is not None and params["max_lag_bytes"] < 0:
        raise ModuleFailure("max_lag_bytes is %s: expected 0 or more bytes (max_lag_bytes)" % params["max_lag_bytes"])
    names = [m["name"] for m in params["members"]]
    if params["candidate"] not in names:
        raise ModuleFailure("candidate %s is not one of members (%s): expected one of them (candidate)"
                            % (params["candidate"], ", ".join(names)))


# ---------------------------------------------------------------- reading


def _conn(params, member):
    return dict(host=member["host"], port=member["port"], user=params.get("login_user"),
                password=params.get("login_password"), connect_timeout=params.get("connect_timeout"))


def read_members(params, members):
    """{name: node_facts + reachable/error} for every member."""
    nodes = {}
    for name, member in members.items():
        facts = dict(name=name, host=member["host"], port=int(member["port"]), reachable=False, error=None)
        try:
            client = rd.connect(_conn(params, member))
            with client:
                facts.update(rd.node_facts(client.info("all")), reachable=True)
        except rd.RedisError as exc:
            facts["error"] = str(exc)
        except Exception as exc:  # stopped answering mid-read
            if not rd.is_driver_error(exc):
                raise
            facts["error"] = str(exc)
        nodes[name] = facts
    by_endpoint = dict(("%s:%s" % (f["host"], f["port"]), n) for n, f in nodes.items())
    for facts in nodes.values():
        if facts.get("role") == "replica":
            where = "%s:%s" % (facts["upstream_host"], facts["upstream_port"])
            facts["upstream"] = by_endpoint.get(where, where)
    return nodes


def _roles(nodes):
    return dict((n, dict(role=f.get("role") if f["reachable"] else "unreachable", upstream=f.get("upstream"),
                         offset=f.get("repl_offset"), link=f.get("link_status")))
                for n, f in sorted(nodes.items()))


# ---------------------------------------------------------------- deciding (pure)


def decide(nodes, candidate, max_lag_bytes=None, force=False, demote=()):
    """dict(action, reason, old_primary, lag_bytes, follow): action is `none` (the candidate is the only primary),
    `failover` (the old primary answers: coordinated FAILOVER), `promote` (no primary answers) or `refuse`.

    demote names nodes that may be made replicas of the candidate when they take writes beside it (an old primary
    that answers again after a failover, its writes since then given up); any other second writer is refused."""
    cand = nodes[candidate]
    result = dict(action="refuse", reason=None, old_primary=None, lag_bytes=None, follow=[])
    if not cand["reachable"]:
        result["reason"] = "the candidate %s does not answer: %s (candidate)" % (candidate, cand["error"])
        return result
    primaries = sorted(n for n, f in nodes.items() if f["reachable"] and f.get("role") == "primary")
    others = [p for p in primaries if p != candidate]
    if cand["role"] == "primary" and others and all(p in demote for p in others):
        others = []  # demoted below, with the stragglers
    if len(others) > 1 or (others and cand["role"] == "primary"):
        result["reason"] = ("more than one Redis node takes writes (%s): refusing to add or keep a second writer; "
                            "make all but one a replica first" % ", ".join(primaries))
        return result
    follow = sorted(n for n, f in nodes.items() if n != candidate and f["reachable"]
                    and not (f.get("role") == "replica" and f.get("upstream") == candidate))
    if cand["role"] == "primary":
        result.update(action="none", reason="%s is the primary already" % candidate, follow=follow)
        return result
    if others:
        old = others[0]
        lag = max(nodes[old]["repl_offset"] - cand["repl_offset"], 0)
        result.update(old_primary=old, lag_bytes=lag)
        if cand.get("upstream") != old or cand.get("link_status") != "up":
            result["reason"] = ("the candidate %s does not replicate from the primary %s with its link up (upstream "
                                "%s, link %s): it cannot be handed the primary role without losing writes; repoint "
                                "it first" % (candidate, old, cand.get("upstream"), cand.get("link_status")))
            return result
        if max_lag_bytes is not None and lag > max_lag_bytes and not force:
            result["reason"] = ("the candidate %s is %s bytes behind the primary %s, more than max_lag_bytes %s: "
                                "refusing before anything changes (max_lag_bytes, force)"
                                % (candidate, lag, old, max_lag_bytes))
            return result
        result.update(action="failover", reason="the primary %s answers: coordinated FAILOVER" % old,
                      follow=[n for n in follow if n != old])
        return result
    replicas = dict((n, f) for n, f in nodes.items() if f["reachable"] and f.get("role") == "replica")
    best = max(f["repl_offset"] for f in replicas.values())
    lag = best - cand["repl_offset"]
    result["lag_bytes"] = lag
    result["old_primary"] = cand.get("upstream")
    allowed = max_lag_bytes if max_lag_bytes is not None else 0
    if lag > allowed and not force:
        ahead = sorted(n for n, f in replicas.items() if f["repl_offset"] == best)
        result["reason"] = ("no primary answers and the candidate %s is %s bytes behind %s, the replica with the most "
                            "data: promoting it would lose them (max_lag_bytes %s; candidate, force)"
                            % (candidate, lag, ", ".join(ahead), allowed))
        return result
    result.update(action="promote", reason="no primary answers", follow=follow)
    return result


def _planned(before, plan, candidate):
    after = dict((n, dict(v)) for n, v in before.items())
    after[candidate].update(role="primary", upstream=None)
    for name in list(plan["follow"]) + ([plan["old_primary"]] if plan["action"] == "failover" else []):
        after[name].update(role="replica", upstream=candidate)
    return after


def _describe(roles):
    return "".join("%s: %s%s\n" % (n, r["role"], " of %s" % r["upstream"] if r.get("upstream") else "")
                   for n, r in sorted(roles.items()))


# ---------------------------------------------------------------- acting


def _coordinated_failover(params, members, plan, facts):
    """FAILOVER TO <candidate> on the old primary: writes paused, candidate caught up, roles swapped by Redis."""
    old, candidate = plan["old_primary"], params["candidate"]
    cand = members[candidate]
    timeout_ms = int(params["catchup_timeout"] * 1000)
    client = rd.connect(_conn(params, members[old]))
    with client:
        # Redis refuses FAILOVER TO a replica it does not list as online; one whose link just came up (a re-sync after
        # a restart or a repoint) is listed a moment later. Waited for here, before anything is paused.
        online = _wait(lambda: _online_replica(client, cand), params["catchup_timeout"], params,
                       "%s to be an online replica of %s (catchup_timeout)" % (candidate, old))
        check_guard(params, members, facts)
        # The old primary names its replicas by the address it sees them at (their announced IP, their port).
        host = online["host"]
        client.execute_command("FAILOVER", "TO", host, int(cand["port"]), "TIMEOUT", timeout_ms)

        def done():
            info = client.info("replication")
            state = info.get("master_failover_state")
            if state not in (None, "no-failover"):
                return None
            if info.get("role") == "master":  # Redis aborted: the candidate did not catch up in time
                raise rd.RedisError("FAILOVER to %s was aborted by %s (the candidate did not reach its offset within "
                                    "catchup_timeout %ss): nothing changed, %s is the primary (catchup_timeout)"
                                    % (candidate, old, params["catchup_timeout"], old))
            return info

        _wait(done, params["catchup_timeout"] + params["wait_timeout"], params,
              "the FAILOVER from %s to %s" % (old, candidate))
    facts.update(promoted=True, fence="failover")
    _wait(lambda: _is_primary(params, cand), params["wait_timeout"], params, "%s to take the primary role" % candidate)
    _persist(params, members[old])
    _persist(params, cand)


def _online_replica(client, cand):
    """The old primary's entry for the candidate when it lists it as an online replica, else None."""
    for replica in rd.replicas_of(client.info("replication")):
        if int(replica["port"]) == int(cand["port"]) and replica.get("state") == "online":
            return replica
    return None


def _promote_alone(params, members, candidate, facts):
    """REPLICAOF NO ONE on the candidate, after reading every member again: refused if any takes writes."""
    again = read_members(params, members)
    writers = sorted(n for n, f in again.items() if f["reachable"] and f.get("role") == "primary" and n != candidate)
    if writers:
        raise rd.RedisError("%s takes writes now (it answered again): refusing to promote %s beside it; run again "
                            "and the old primary is handed over by FAILOVER" % (", ".join(writers), candidate))
    client = rd.connect(_conn(params, members[candidate]))
    with client:
        check_guard(params, members, facts)
        client.execute_command("REPLICAOF", "NO", "ONE")
    facts.update(promoted=True, fence="unreachable")
    _persist(params, members[candidate])


def check_guard(params, members, facts):
    """The Redis guard's re-check, the last thing before the promotion: a majority of the members must show this
    run's holder connection (`hold`, no other run's), read now on this step's own connections. A run whose holder
    died, or that lost its majority to another run, refuses (redis_guard). No guard (dr_redis_guard: false): no
    check. The token checked is the promotion's fencing value (guard_token)."""
    guard = params.get("guard")
    if not guard or not guard.get("enabled"):
        return
    if not guard.get("held") or not guard.get("token"):
        raise rd.RedisError("refusing to promote without the Redis guard (redis_guard): %s"
                            % (guard.get("msg") or "it was not taken"))
    clients = {}
    for name, member in members.items():
        try:
            client = rd.connect(_conn(params, member))
            with client:
                clients[name] = client.client_list()
        except Exception as exc:  # a member that does not answer shows no guard
            if not (isinstance(exc, rd.RedisError) or rd.is_driver_error(exc)):
                raise
    held = _redis_guard.held_members(clients, guard["token"])
    needed = _redis_guard.majority(len(members))
    if len(held) < needed:
        raise rd.RedisError(
            "refusing to promote %s: this run's Redis guard (token %s) shows on %s of %s members (%s), a majority "
            "(%s) is needed (redis_guard). Its holder ended or another run took the guard; nothing was promoted. "
            "Run again once no other run is active."
            % (params["candidate"], guard["token"], len(held), len(members), ", ".join(held) or "none", needed))
    facts["guard_token"] = guard["token"]


def _is_primary(params, member):
    client, _error, _kind = rd.try_connect(_conn(params, member))
    if client is None:
        return False
    with client:
        return client.info("replication").get("role") == "master"


def _repoint(params, members, candidate, names):
    """REPLICAOF the candidate on each node of names; wait until each one's link is up."""
    cand = members[candidate]
    done = []
    for name in names:
        client = rd.connect(_conn(params, members[name]))
        with client:
            client.execute_command("REPLICAOF", cand["host"], int(cand["port"]))
        _persist(params, members[name])
        done.append(name)
    for name in done:
        _wait(lambda n=name: _linked(params, members[n], cand), params["wait_timeout"], params,
              "%s to replicate from %s with its link up" % (name, candidate))
    return done


def _linked(params, member, cand):
    client, _error, _kind = rd.try_connect(_conn(params, member))
    if client is None:
        return False
    with client:
        info = client.info("replication")
    return (info.get("role") == "slave" and info.get("master_host") == cand["host"]
            and int(info.get("master_port", 0)) == int(cand["port"]) and info.get("master_link_status") == "up")


def _persist(params, member):
    """CONFIG REWRITE when the node has a config file: its role survives a restart. True when the role the file
    holds (its replicaof line; none: a primary), readable from here, changed; False when unchanged or not visible."""
    client = rd.connect(_conn(params, member))
    with client:
        path = client.info("server").get("config_file")
        if not path:
            return False
        before = _role_in(path)
        rd.config_rewrite(client)
        return before is not None and _role_in(path) != before


def _role_in(path):
    """The replicaof/slaveof lines of a config file ([] for a primary), or None when it cannot be read here."""
    try:
        with open(path) as handle:
            return [" ".join(line.split()).lower() for line in handle
                    if line.split() and line.split()[0].lower() in ("replicaof", "slaveof")]
    except (OSError, UnicodeDecodeError):
        return None


def _persist_roles(params, members, nodes, facts):
    """Every member that answered persists the role it runs now. A run cut off between Redis's hand-over (FAILOVER,
    REPLICAOF) and the CONFIG REWRITEs left config files naming the old roles - a restart would bring back the old
    primary beside the new one - and no role to change: this is what the next run finishes. A file seen to change
    is a change (persisted)."""
    changed = []
    for name in sorted(members):
        if nodes.get(name, {}).get("reachable"):
            try:
                if _persist(params, members[name]):
                    changed.append(name)
            except Exception as exc:  # stopped answering since it was read: the next run persists it
                if not (isinstance(exc, rd.RedisError) or rd.is_driver_error(exc)):
                    raise
    facts["persisted"] = changed
    if changed:
        facts["changed"] = True


def _wait(probe, timeout, params, what):
    try:
        return wait_for(probe, timeout, interval=params["poll_interval"], what=what)[0]
    except WaitTimeout as exc:
        raise rd.RedisError("%s (wait_timeout; last seen: %s)" % (exc, exc.last)) from None
