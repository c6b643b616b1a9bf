# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logic of erlmcp.dr.pg_replication_info: what every node of a cluster says about itself.

Each node is asked for its role, timeline, LSNs and WAL receiver (an unreachable node carries
its error instead); the summary adds each standby's lag behind the one primary and which node it
streams from, and flags split brain and mixed clusters. Read-only. Private to the collection:
the API may change between releases.
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import (
    ModuleFailure,
    lsn_diff,
    node_state,
    psycopg,
    replication_stats,
    try_connect,
)

APPLICATION_NAME = "erlmcp.dr.pg_replication_info"
NODE_KEYS = ("role", "in_recovery", "timeline", "system_identifier", "server_version", "cluster_name", "current_lsn",
             "receive_lsn", "replay_lsn", "position_lsn", "replay_paused", "last_replay_at", "read_only",
             "wal_receiver", "receiver_status", "upstream_host", "upstream_port", "upstream", "streaming",
             "lag_bytes", "receive_lag_bytes", "lag_seconds", "sync_state", "replication", "replicas")


def inspect(node, params):
    """Facts of one node; unreachable nodes carry the error instead."""
    facts = dict(name=node["name"], host=node["host"], port=node["port"], reachable=False, error=None)
    facts.update((key, None) for key in NODE_KEYS)
    conn_params = dict(host=node["host"], port=node["port"], user=params["login_user"],
                       password=params["login_password"], dbname=params["login_db"],
                       connect_timeout=params["connect_timeout"])
    conn, error = try_connect(conn_params, APPLICATION_NAME)
    if conn is None:
        facts["error"] = error
        return facts
    try:
        with conn:
            state = node_state(conn)
            replicas = replication_stats(conn) if not state["in_recovery"] else None
    except psycopg.Error as exc:
        facts["error"] = "connected to %s:%s but could not read its state: %s" % (
            node["host"], node["port"], str(exc).strip())
        return facts
    receiver = state["wal_receiver"] or {}
    facts.update(dict((key, state.get(key)) for key in NODE_KEYS if key in state))
    facts.update(
        reachable=True,
        receiver_status=receiver.get("status"),
        upstream_host=receiver.get("sender_host"),
        upstream_port=receiver.get("sender_port"),
        streaming=receiver.get("status") == "streaming" if state["in_recovery"] else None,
        replicas=replicas,
    )
    return facts


def _same_endpoint(facts, host, port):
    return facts["port"] == port and facts["host"] == host


def add_replication(nodes, primaries):
    """Lag of each standby behind the one primary, and which node each standby streams from."""
    for facts in nodes.values():
        if facts["role"] != "standby" or not facts["upstream_port"]:
            continue
        for other in nodes.values():
            if other is not facts and _same_endpoint(other, facts["upstream_host"], facts["upstream_port"]):
                facts["upstream"] = other["name"]
    for name in primaries:
        for row in nodes[name]["replicas"] or []:
            standby = nodes.get(row["application_name"])
            if standby is None or standby is nodes[name]:
                continue
            if standby["upstream"] is None and standby["role"] == "standby":
                standby["upstream"] = name
            if len(primaries) == 1:
                standby.update(replication=row, lag_seconds=row["replay_lag_seconds"], sync_state=row["sync_state"])
    if len(primaries) != 1:
        return
    current = nodes[primaries[0]]["current_lsn"]
    for facts in nodes.values():
        if facts["role"] == "standby":
            facts["lag_bytes"] = lsn_diff(current, facts["replay_lsn"])
            facts["receive_lag_bytes"] = lsn_diff(current, facts["receive_lsn"])


def summarize(nodes):
    primaries = sorted(n for n, f in nodes.items() if f["reachable"] and f["role"] == "primary")
    add_replication(nodes, primaries)
    sysids = set(f["system_identifier"] for f in nodes.values() if f["reachable"])
    return dict(
        changed=False,
        nodes=nodes,
        primary=primaries[0] if len(primaries) == 1 else None,
        primaries=primaries,
        split_brain=len(primaries) > 1,
        standbys=sorted(n for n, f in nodes.items() if f["reachable"] and f["role"] == "standby"),
        unreachable_nodes=sorted(n for n, f in nodes.items() if not f["reachable"]),
        system_identifiers_agree=len(sysids) <= 1,
        system_identifier=sysids.pop() if len(sysids) == 1 else None,
    )


def run(params, check_mode=False, diff=False):
    """Ask every node in params['nodes'] and summarize (read-only: check mode and diff change nothing).

    Returns the result dict (nodes, primary, split_brain, ...); raises ModuleFailure when the
    nodes option is invalid.
    """
    names = [n["name"] for n in params["nodes"]]
    duplicates = sorted(set(n for n in names if names.count(n) > 1))
    if duplicates:
        raise ModuleFailure("nodes: each name must appear once; found %s more than once" % ", ".join(duplicates))
    nodes = dict((n["name"], inspect(n, params)) for n in params["nodes"])
    return summarize(nodes)
