# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plumbing every runbook playbook shares: its parameters and its database nodes."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.erlmcp.dr.plugins.module_utils import _runbook_params

UNSET = "__erlmcp_dr_unset__"


def runbook_params(spec, values):
    """Parameters as the spec makes them: types coerced, ranges checked, defaults filled, secrets left out.

    values: the parameters' current values in spec order, UNSET where not given
    (q('ansible.builtin.vars', *spec, default=UNSET)). Secrets (no_log) are dropped so
    that set_fact never records them; tasks read those variables directly.

    Superseded by the action erlmcp.dr.runbook_params, which reads the values without templating
    them (q('vars') templates them first); kept until every runbook calls the action.
    """
    names = list(spec)
    if len(values) != len(names):
        raise AnsibleFilterError("runbook_params: %d values for %d parameters" % (len(values), len(names)))
    pairs = zip(names, values)  # noqa: B905 (lengths checked above)
    given = dict((name, value) for name, value in pairs if value != UNSET)
    validated, errors = _runbook_params.validate(spec, given)
    if errors:
        raise AnsibleFilterError("invalid runbook parameters: " + "; ".join(errors))
    secrets = set(name for name, option in spec.items() if option.get("no_log"))
    return dict((k, v) for k, v in validated.items() if k not in secrets)


def pg_nodes(hosts, hostvars):
    """[{name, host, port}] for the given inventory hosts (pg_host and pg_port, else the name and 5432)."""
    nodes = []
    for name in hosts:
        host_vars = hostvars[name]
        nodes.append(dict(name=name, host=host_vars.get("pg_host", name), port=int(host_vars.get("pg_port", 5432))))
    return nodes


class FilterModule(object):
    def filters(self):
        return {"runbook_params": runbook_params, "pg_nodes": pg_nodes}
