# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logic of erlmcp.dr.pg_replication_info: what every node of a cluster says about itself.

Each node is asked for its role, timeline, LSNs, WAL receiver and configured upstream (an unreachable
node carries its error and error_kind instead). Membership is by identity: the cluster's system
identifier is the writable primary's (else the majority's); reachable nodes with another one are
foreign and left out of primaries/standbys. A standby's upstream is the node at its WAL receiver's
sender host:port with the same system identifier (never matched by application_name). Only writable
primaries count as primaries; read-only (fenced) ones are listed apart. Read-only. Private to the
collection: the API may change between releases.
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._common.at_once import each_at_once
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import kept_connections
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import conninfo_endpoint
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import (
    is_driver_error,
    lsn_diff,
    node_state,
    query_one,
    replication_stats,
)

APPLICATION_NAME = "erlmcp.dr.pg_replication_info"
NODE_KEYS = ("role", "in_recovery", "timeline", "system_identifier", "server_version", "cluster_name",
             "synchronous_standby_names", "current_lsn",
             "receive_lsn", "replay_lsn", "position_lsn", "replay_paused", "last_replay_at", "read_only", "writable",
             "wal_receiver", "receiver_status", "upstream_host", "upstream_port", "upstream",
             "configured_upstream_host", "configured_upstream_port", "configured_upstream", "streaming",
             "lag_bytes", "receive_lag_bytes", "lag_seconds", "sync_state", "replication", "replicas", "foreign")


def _configured_upstream(conn):
    """(host, port) from the node's primary_conninfo; (None, None) when unset or not readable. Never the password."""
    try:
        row = query_one(conn, "SELECT current_setting('primary_conninfo', true) AS value")
    except Exception as exc:
        if is_driver_error(exc):
            return None, None
        raise
    return conninfo_endpoint(row["value"]) if row and row["value"] else (None, None)


def inspect(node, params):
    """Facts of one node; unreachable nodes carry the error (and its kind) instead."""
    facts = dict(name=node["name"], host=node["host"], port=node["port"], reachable=False, error=None,
                 error_kind=None)
    facts.update((key, None) for key in NODE_KEYS)
    conn_params = dict(host=node["host"], port=node["port"], user=params["login_user"],
                       password=params["login_password"], dbname=params["login_db"],
                       connect_timeout=params["connect_timeout"])
    # a connection an earlier read of this task kept (kept_connections.kept(): pg_begin's two reads), else a new one
    conn, error, reused = kept_connections.open_for_read(conn_params, APPLICATION_NAME)
    if conn is None:
        facts.update(error=str(error), error_kind=error.kind or "other")
        return facts
    try:
        state = node_state(conn)
        replicas = replication_stats(conn) if not state["in_recovery"] else None
        # A primary too: a promoted node keeps its last primary_conninfo, which names the node it was promoted
        # away from - how a switchover's re-run finds the old primary to bring back (_failover.switchover_plan).
        configured = _configured_upstream(conn)
    except Exception as exc:
        kept_connections.hand_back(conn, conn_params, APPLICATION_NAME, healthy=False)
        if not is_driver_error(exc):
            raise
        if reused:  # the node changed since the kept connection was opened: a new connection says what it is now
            return inspect(node, params)
        facts.update(error="connected to %s:%s but could not read its state: %s" % (
            node["host"], node["port"], str(exc).strip()), error_kind="other")
        return facts
    kept_connections.hand_back(conn, conn_params, APPLICATION_NAME)
    receiver = state["wal_receiver"] or {}
    facts.update(dict((key, state.get(key)) for key in NODE_KEYS if key in state))
    facts.update(
        reachable=True,
        writable=not state["in_recovery"] and not state["read_only"],
        receiver_status=receiver.get("status"),
        upstream_host=receiver.get("sender_host"),
        upstream_port=receiver.get("sender_port"),
        configured_upstream_host=configured[0],
        configured_upstream_port=configured[1],
        streaming=receiver.get("status") == "streaming" if state["in_recovery"] else None,
        replicas=replicas,
        foreign=False,
    )
    return facts


def _same_host(a, b):
    return str(a or "").strip().lower() == str(b or "").strip().lower()


def node_at(nodes, host, port, system_identifier):
    """Name of the node at host:port: a reachable one must have that system identifier; an unreachable one (a
    stopped primary a standby still points at) is matched by host:port alone. None when there is none."""
    if not port:
        return None
    for name, other in sorted(nodes.items()):
        if other["port"] != port or not _same_host(other["host"], host):
            continue
        if not other["reachable"] or other["system_identifier"] == system_identifier:
            return name
    return None


def cluster_identifier(nodes):
    """The cluster's system identifier: the one writable primary's, else the one most reachable nodes share."""
    reachable = [f for f in nodes.values() if f["reachable"]]
    writers = set(f["system_identifier"] for f in reachable if f["writable"])
    if len(writers) == 1:
        return writers.pop()
    counts = {}
    for facts in reachable:
        counts[facts["system_identifier"]] = counts.get(facts["system_identifier"], 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    leaders = [sysid for sysid, n in counts.items() if n == best]
    return leaders[0] if len(leaders) == 1 else None


def add_upstreams(nodes):
    for facts in nodes.values():
        if facts["role"] not in ("standby", "primary"):
            continue
        sysid = facts["system_identifier"]
        if facts["role"] == "standby":
            facts["upstream"] = node_at(nodes, facts["upstream_host"], facts["upstream_port"], sysid)
        facts["configured_upstream"] = node_at(nodes, facts["configured_upstream_host"],
                                               facts["configured_upstream_port"], sysid)


def add_lag(nodes, source):
    """Lag of each standby of the cluster behind the source (the one primary); its pg_stat_replication row
    for the standbys that stream from it (the row is picked by application_name only once identity says so)."""
    current = nodes[source]["current_lsn"]
    rows = dict((row["application_name"], row) for row in nodes[source]["replicas"] or [])
    for name, facts in nodes.items():
        if facts["role"] != "standby" or facts["foreign"]:
            continue
        facts["lag_bytes"] = lsn_diff(current, facts["replay_lsn"])
        facts["receive_lag_bytes"] = lsn_diff(current, facts["receive_lsn"])
        if facts["upstream"] == source:
            row = rows.get(name) or rows.get(facts["cluster_name"])
            if row is not None:
                facts.update(replication=row, lag_seconds=row["replay_lag_seconds"], sync_state=row["sync_state"])


def summarize(nodes):
    sysid = cluster_identifier(nodes)
    reachable = sorted(n for n, f in nodes.items() if f["reachable"])
    foreign = sorted(n for n in reachable if sysid is not None and nodes[n]["system_identifier"] != sysid)
    for name in foreign:
        nodes[name]["foreign"] = True
    members = [n for n in reachable if n not in foreign]
    primaries = [n for n in members if nodes[n]["role"] == "primary" and nodes[n]["writable"]]
    fenced = [n for n in members if nodes[n]["role"] == "primary" and not nodes[n]["writable"]]
    add_upstreams(nodes)
    source = primaries[0] if len(primaries) == 1 else (fenced[0] if not primaries and len(fenced) == 1 else None)
    if source:
        add_lag(nodes, source)
    sysids = set(nodes[n]["system_identifier"] for n in reachable)
    return dict(
        changed=False,
        nodes=nodes,
        primary=primaries[0] if len(primaries) == 1 else None,
        primaries=primaries,
        fenced_primaries=fenced,
        split_brain=len(primaries) > 1,
        standbys=[n for n in members if nodes[n]["role"] == "standby"],
        unreachable_nodes=sorted(n for n, f in nodes.items() if not f["reachable"]),
        foreign_nodes=foreign,
        system_identifiers_agree=len(sysids) <= 1,
        system_identifier=sysid,
    )


def run(params, check_mode=False, diff=False, warn=None):
    """Ask every node in params['nodes'], all at once, and summarize (read-only: check mode and diff change nothing).

    Returns the result dict (nodes, primary, split_brain, ...); raises ModuleFailure when the
    nodes option is invalid. warn(message) is called for foreign nodes.
    """
    names = [n["name"] for n in params["nodes"]]
    duplicates = sorted(set(n for n in names if names.count(n) > 1))
    if duplicates:
        raise ModuleFailure("nodes: each name must appear once; found %s more than once" % ", ".join(duplicates))
    facts = each_at_once(lambda node: inspect(node, params), params["nodes"])
    nodes = dict((node["name"], found) for node, found in zip(params["nodes"], facts))
    result = summarize(nodes)
    if warn and result["foreign_nodes"]:
        warn("%s belong to another cluster (system identifier %s, the cluster's is %s): left out of primaries and "
             "standbys" % (", ".join(result["foreign_nodes"]),
                           ", ".join(sorted(set(nodes[n]["system_identifier"] for n in result["foreign_nodes"]))),
                           result["system_identifier"]))
    return result
