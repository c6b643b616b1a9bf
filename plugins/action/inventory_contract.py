# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.inventory_contract: reads the inventory on the controller, checks it with
module_utils/_common/contract.py and fails listing every problem at once."""

from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import is_trusted_as_template
from ansible_collections.erlmcp.dr.plugins.module_utils._common import contract as _contract
from ansible_collections.erlmcp.dr.plugins.modules.inventory_contract import argument_spec

PARSABLE_SUFFIXES = (".yml", ".yaml", ".json")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec())
        groups, controller_spec = args["groups"], args["vars"]
        bad_contract = _contract.contract_problems(groups, controller_spec)
        if bad_contract:
            return dict(result, failed=True, changed=False,
                        msg="The inventory contract given to this task is wrong: " + "; ".join(bad_contract))

        sources = [str(s) for s in (task_vars.get("ansible_inventory_sources") or [])]
        hosts_by_group = dict(task_vars.get("groups") or {})
        problems, checked = [], {}
        for name in sorted(groups):
            group = groups[name]
            found = _contract.group_problems(name, group, hosts_by_group)
            problems.extend(found)
            checked[name] = list(hosts_by_group.get(name) or [])
            spec = group.get("host_vars") or {}
            for host in checked[name]:
                values = self._host_values(task_vars, host, spec)
                problems.extend(_contract.vars_problems(values, spec, "host %s (group %s)" % (host, name)))
        controller = task_vars.get("inventory_hostname", "localhost")
        values = self._values(task_vars, controller_spec, task_vars)
        problems.extend(_contract.vars_problems(values, controller_spec, "controller (%s)" % controller))
        if any(p.startswith("group '") for p in problems):
            problems[:0] = self._source_problems(sources)  # the cause first

        result.update(changed=False, inventory_sources=sources, hosts=checked)
        if problems:
            return dict(result, failed=True, ok=False, problems=problems,
                        msg=_contract.failure_message(args["description"], problems, sources))
        return dict(result, ok=True)

    # -------------------------------------------------------- reading values

    def _host_values(self, task_vars, host, spec):
        hostvars = task_vars.get("hostvars")
        raw = hostvars.raw_get(host) if hostvars is not None else {}
        if not isinstance(raw, dict) and not hasattr(raw, "get"):
            return {}
        return self._values(raw, spec, raw)

    def _values(self, raw, spec, template_vars):
        """Each variable of spec: its raw value, or (only a trusted template, never a secret) the rendered one."""
        values = {}
        templar = None
        for name, option in spec.items():
            if name not in raw:
                continue
            value = raw[name]
            renderable = isinstance(value, str) and is_trusted_as_template(value)
            if option.get("no_log") or not (renderable and self._templar.is_possibly_template(value)):
                values[name] = value
                continue
            if templar is None:
                templar = self._templar.copy_with_new_env(available_variables=template_vars)
            try:
                values[name] = templar.template(value)
            except AnsibleError as exc:
                values[name] = _contract.TemplateFailure(str(exc).splitlines()[0])
        return values

    def _source_problems(self, sources):
        """Why a source gave no groups: missing, or a YAML/JSON file that does not parse."""
        problems = []
        for source in sources:
            if "," in source and not os.path.exists(source):
                continue  # a host list given inline (-i 'a,b,')
            if not os.path.exists(source):
                problems.append("inventory source %s does not exist" % source)
                continue
            files = [source] if os.path.isfile(source) else sorted(
                os.path.join(source, f) for f in os.listdir(source) if f.endswith(PARSABLE_SUFFIXES))
            for path in files:
                if not path.endswith(PARSABLE_SUFFIXES):
                    continue
                try:
                    data = self._loader.load_from_file(path)
                except AnsibleError as exc:
                    where = str(getattr(exc, "obj", None) or "")
                    problems.append("inventory source %s could not be parsed%s: %s" % (
                        path, " (at %s)" % where if where.startswith(path) else "", " ".join(str(exc).split())[:300]))
                    continue
                if not data:
                    problems.append("inventory source %s is empty" % path)
        return problems
