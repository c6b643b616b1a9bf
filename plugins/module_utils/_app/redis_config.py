# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logic of erlmcp.dr.app_redis_config: the application's Redis endpoint file, from the live deployment.

content() is pure (unit-tested): from an erlmcp.dr.redis_info result it builds
{"redis": {"primary": "host:port", "replicas": [...], "primary_node": name, "replica_nodes": [...]}}, the replicas
being the nodes that replicate from the primary now with their link up. run() writes it atomically (temp file,
fsync, rename), keeping the version it replaces as <path>.previous - the same writer as app_db_config.
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._app.db_config import write_endpoint_file
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure


def _endpoint(facts):
    return "%s:%s" % (facts.get("host"), facts.get("port"))


def content(info):
    """The config dict for a redis_info result; ModuleFailure without exactly one reachable primary."""
    nodes = (info or {}).get("nodes") or {}
    primaries = list((info or {}).get("primaries") or [])
    primary = (info or {}).get("primary")
    if not primary or primary not in nodes or len(primaries) > 1:
        raise ModuleFailure("no single Redis primary to point the application at: found primaries [%s], expected "
                            "exactly one (info: pass the result of erlmcp.dr.redis_info taken after the change)"
                            % ", ".join(primaries))
    replicas = sorted(name for name, facts in nodes.items()
                      if name != primary and facts.get("reachable") and facts.get("role") == "replica"
                      and facts.get("upstream") == primary and facts.get("link_status") == "up")
    return {"redis": {
        "primary": _endpoint(nodes[primary]),
        "replicas": [_endpoint(nodes[name]) for name in replicas],
        "primary_node": primary,
        "replica_nodes": replicas,
    }}


def run(params, check_mode=False, diff=False, warn=None):
    """Write params['path'] from params['info']; changed only when the content (or mode) differs."""
    return write_endpoint_file(params["path"], params.get("mode"), content(params["info"]), check_mode, diff,
                               what="the application's Redis config", primary_label="Redis primary",
                               fencing_token=params.get("fencing_token"))
