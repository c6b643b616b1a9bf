# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.dns_begin: the start of the dns_cutover runbook in ONE task.

The order, the lock and its release on failure are the shared start's (plugins/plugin_utils/begin.py, also
erlmcp.dr.pg_begin's); this file supplies DNS's parts:
- the contract: the `contract` option, without its groups for Route 53 (the hosted zone's name servers are asked,
  never the inventory's dns group);
- `prepare`, before any server is asked: the records and the target (_dns_plan.check_params), the authoritative
  servers from the dns group, and the earlier run that rollback_of names (_dns_rollback.rollback_source);
- the lock key: the zone (`dns:<zone>.`), from the inventory, so the zone is read once, under the lock;
- the reader: erlmcp.dr.dns_info on every record, at every authoritative server (its action plugin, with its checks
  and messages);
- the plan: _dns_plan.cutover_plan with the runbook's parameters, the regions' addresses, what the last recorded
  cutovers set and what is left of the RTO budget (counted from this task's start).

The DNS settings the reads use (dns_provider, dns_zone, dns_route53_zone_id, dns_aws_endpoint_url, dns_timeout) are
rendered here only once the parameters passed; the TSIG key is not read: queries are not signed.
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleError
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import plan as _dns_plan
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import rollback as _dns_rollback
from ansible_collections.erlmcp.dr.plugins.module_utils._dns.base import warm_driver
from ansible_collections.erlmcp.dr.plugins.modules.dns_begin import argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.begin import BeginAction, BeginRefusal

warm_driver()  # the reads run in this task's worker: dnspython imported once, before the fork (see _common/module.py)

RUN_DIR_VAR = "erlmcp_dr_run_dir"  # set by the runbook CLI and erlmcp_dr.run(): this run's folder
RUNBOOK_VAR = "runbook"  # the play's runbook metadata (rto_seconds), read raw like its parameters
ROLLBACK_NEEDS_RUN_DIR = (
    "rollback_of needs the run folders of the runbook CLI or erlmcp_dr.run(); with plain ansible-playbook give the "
    "previous values instead: values=[...] expected_values=[...]")


class ActionModule(BeginAction):
    """DNS's parts of the one-task start (see the module's docstring)."""

    _requires_connection = False  # the reads speak DNS (or the Route 53 API) from the controller
    ARGUMENT_SPEC = staticmethod(argument_spec)
    KEY_NEEDS_READ = False  # the key is the zone, which the inventory names
    READ_PHASES = (None, "read")
    PREPARE_PHASE = "check"
    PLAN_SOURCE = "servers' answers"

    def contract(self, start):
        contract = dict(start.args["contract"])
        try:
            provider = self._setting(start.task_vars, "provider")
        except AnsibleError:
            return contract  # the contract's check names the broken variable
        if provider == "route53":
            contract["groups"] = {}
        return contract

    def prepare(self, start):
        task_vars, dr = start.task_vars, start.dr
        settings = dict((option, self._setting(task_vars, option)) for option, _var, _default in _dns_plan.SETTINGS)
        checked = _dns_plan.check_params(dr, self.rendered_or(task_vars, "dns_records", []),
                                         self.rendered_or(task_vars, "dns_region_addresses", {}) or {})
        if checked["problems"]:
            raise BeginRefusal("; ".join(checked["problems"]), problems=checked["problems"])
        run_dir = self.rendered_or(task_vars, RUN_DIR_VAR)
        rollback = None
        if dr.get("rollback_of") is not None:
            if run_dir is None:
                raise BeginRefusal(ROLLBACK_NEEDS_RUN_DIR)
            try:
                rollback = _dns_rollback.rollback_source(str(run_dir), str(dr["rollback_of"]))
            except (ValueError, _dns_rollback.RollbackError) as exc:
                raise BeginRefusal(str(exc)) from None
        hosts = (task_vars.get("groups") or {}).get("dns") or []
        servers = [] if settings["provider"] == "route53" else _dns_plan.dns_servers(hosts, task_vars.get("hostvars"))
        return dict(settings=settings, checked=checked, servers=servers, run_dir=run_dir, rollback=rollback)

    def read(self, start):
        """dns_info on every record; the first record that cannot be read fails the read, naming it."""
        prepared, results = start.prepared, []
        for name in prepared["checked"]["records"]:
            answer = self.sub_action("erlmcp.dr.dns_info", _dns_plan.read_args(
                prepared["settings"], prepared["servers"], name, start.dr.get("type") or "A"), start.task_vars,
                check_mode=False)
            results.append(answer)
            if answer.get("failed"):
                return dict(answer, msg="reading %s: %s" % (name, answer.get("msg")), results=results)
        return {"results": results}

    def lock_key(self, start):
        return _dns_plan.lock_key(str(start.prepared["settings"]["zone"]))

    def plan_name(self, start):
        return "cutover"

    def plan(self, start):
        prepared, before = start.prepared, start.read["results"]
        recorded = {}
        if prepared["run_dir"] is not None:
            recorded = _dns_rollback.recorded_values(str(prepared["run_dir"]), [info["name"] for info in before])
        plan = _dns_plan.cutover_plan(
            before, start.dr, prepared["checked"], prepared["rollback"], self._rto_left(start),
            dict(self.rendered_or(start.task_vars, "dns_region_addresses", {}) or {}), recorded)
        if plan["action"] != "refuse":
            start.warnings.extend(plan["warnings"])  # what a resolver may still cache; a refusal says only why
        return plan

    def facts(self, start):
        return dict(dr_plan=start.plan, dns_begin_lock=start.lock, dr_dns_servers=start.prepared["servers"])

    def returned(self, start):
        return dict(records=start.read["results"])

    # ------------------------------------------------------------------ DNS's settings

    def _setting(self, task_vars, option):
        """A DNS setting (_dns_plan.SETTINGS: the module_defaults of group/erlmcp.dr.dns), rendered."""
        var, default = dict((o, (v, d)) for o, v, d in _dns_plan.SETTINGS)[option]
        return self.rendered_or(task_vars, var, default)

    def _rto_left(self, start):
        """Seconds left of the runbook's RTO budget (vars.runbook.rto_seconds), counted from this task's start;
        None without a budget (no TTL warning then)."""
        meta = start.task_vars.get(RUNBOOK_VAR)
        rto = meta.get("rto_seconds") if isinstance(meta, dict) else None
        if not isinstance(rto, (int, float)) or isinstance(rto, bool):
            return None
        return rto - (time.time() - start.started)
