# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The application's database config, derived from the live cluster (never from labels)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def _endpoint(hostvars, name):
    host_vars = hostvars[name]
    return "%s:%s" % (host_vars.get("pg_host", name), host_vars.get("pg_port", 5432))


def _streams_from(facts, primary_endpoint):
    receiver = facts.get("wal_receiver") or {}
    return receiver.get("status") == "streaming" and "%s:%s" % (
        receiver.get("sender_host"), receiver.get("sender_port")) == primary_endpoint


def app_db_config(cluster, hostvars):
    """{"database": {"primary": "host:port", "replicas": [...], "primary_node": name}}.

    cluster is erlmcp.dr.pg_replication_info's result; replicas are the standbys that
    stream from the primary right now, in name order.
    """
    primary = cluster.get("primary")
    if not primary:
        raise AnsibleFilterError("no single live primary to point the application at (primaries: %s)"
                                 % ", ".join(cluster.get("primaries") or []) or "none")
    primary_endpoint = _endpoint(hostvars, primary)
    replicas = sorted(name for name, facts in cluster.get("nodes", {}).items()
                      if name != primary and _streams_from(facts, primary_endpoint))
    return {"database": {
        "primary": primary_endpoint,
        "replicas": [_endpoint(hostvars, name) for name in replicas],
        "primary_node": primary,
        "replica_nodes": replicas,
    }}


class FilterModule(object):
    def filters(self):
        return {"app_db_config": app_db_config}
