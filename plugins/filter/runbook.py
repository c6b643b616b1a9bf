# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plumbing every database runbook shares: its database nodes from the inventory."""

from __future__ import annotations


def pg_nodes(hosts, hostvars):
    """[{name, host, port}] for the given inventory hosts (pg_host and pg_port, else the name and 5432)."""
    nodes = []
    for name in hosts:
        host_vars = hostvars[name]
        nodes.append(dict(name=name, host=host_vars.get("pg_host", name), port=int(host_vars.get("pg_port", 5432))))
    return nodes


class FilterModule(object):
    def filters(self):
        return {"pg_nodes": pg_nodes}
