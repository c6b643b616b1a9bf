# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of redis_info: every node's role, offsets, links, persistence, keys and versions (read-only)."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._common.at_once import each_at_once
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import client as rd

HINTS = dict(host="nodes[].host", port="nodes[].port", password="login_password")


def run(params, check_mode=False, diff=False, warn=None):
    """Ask every node of params["nodes"], all at once; never changes anything (check mode runs the same)."""
    answers = each_at_once(lambda node: _ask(node, params), params["nodes"])
    nodes = dict((node["name"], facts) for node, facts in zip(params["nodes"], answers))
    reachable = [facts for facts in nodes.values() if facts["reachable"]]
    primaries = sorted(f["name"] for f in reachable if f["role"] == "primary")
    _add_lag(nodes, primaries)
    return dict(
        changed=False,
        nodes=nodes,
        primary=primaries[0] if len(primaries) == 1 else None,
        primaries=primaries,
        split_brain=len(primaries) > 1,
        replicas=sorted(f["name"] for f in reachable if f["role"] == "replica"),
        unreachable_nodes=sorted(name for name, f in nodes.items() if not f["reachable"]),
    )


def _ask(node, params):
    conn_params = dict(host=node["host"], port=node["port"], user=params.get("login_user"),
                       password=params.get("login_password"), connect_timeout=params.get("connect_timeout"))
    facts = dict(name=node["name"], host=node["host"], port=node["port"], reachable=False, error=None,
                 error_kind=None, role=None, upstream=None)
    try:
        client = rd.connect(conn_params, HINTS)
        with client:
            facts.update(rd.read_node(client))
    except rd.RedisError as exc:
        facts.update(error=str(exc), error_kind=exc.kind)
        return facts
    except Exception as exc:  # a server that stops answering mid-read: the node is unreachable, said so
        if not rd.is_driver_error(exc):
            raise
        facts.update(error="Redis at %s:%s stopped answering: %s" % (node["host"], node["port"], exc),
                     error_kind="other")
        return facts
    facts["reachable"] = True
    return facts


def _add_lag(nodes, primaries):
    """A replica's upstream node name (by host:port) and lag in bytes behind the one reachable primary."""
    by_endpoint = dict(("%s:%s" % (f["host"], f["port"]), name) for name, f in nodes.items())
    offset = nodes[primaries[0]]["repl_offset"] if len(primaries) == 1 else None
    for facts in nodes.values():
        if facts.get("role") != "replica":
            continue
        where = "%s:%s" % (facts["upstream_host"], facts["upstream_port"])
        facts["upstream"] = by_endpoint.get(where, where)
        if offset is not None and facts["upstream"] == primaries[0]:
            facts["lag_bytes"] = max(offset - facts["repl_offset"], 0)
