#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# The argument spec is here, with the documentation; the work is done on the controller by the action plugin
# plugins/action/dns_begin.py, which validates its task against argument_spec().

from __future__ import annotations

DOCUMENTATION = r"""
module: dns_begin
short_description: Start a DNS cutover in one task - parameters, inventory, lock the zone, read, plan
version_added: "0.1.0"
description:
  - The start of the C(dns_cutover) runbook, as one task on the controller. In this order, it runs
    M(erlmcp.dr.runbook_params) (the runbook's parameters are read raw and refused when they hold template
    markers, before anything else is templated or run), M(erlmcp.dr.inventory_contract) (O(contract); its groups
    are not required when C(dns_provider) is C(route53)), checks the records and the target before any server is
    asked (and reads the earlier run that C(rollback_of) names), takes M(erlmcp.dr.run_lock) keyed by the zone
    (C(dns:<zone>.)), reads every record at every authoritative server with M(erlmcp.dr.dns_info) once the lock is
    held, and makes the plan from that read.
  - The plan (the fact C(dr_plan)) is what is missing for each record - its current value, its target, the guard
    value the change will hold it to (C(expected_values), the values the confirmed plan saw in C(confirmed_values),
    or what the servers agree on) - or a refusal with its reason (the servers disagree, unless C(force); a current
    value none of the regions' addresses nor the last recorded cutover's; a record changed since the plan was
    confirmed). A refusal does not fail this task - the runbook's gate fails on it, and its summary still shows the
    plan.
  - Sets the facts C(dr) (the validated parameters, secrets left out), C(dr_plan), C(dns_begin_lock) (the lock's
    result; C(dns_begin_lock.key) is what the caller releases) and C(dr_dns_servers) (the inventory's authoritative
    servers, the primary first; empty for Route 53).
  - When another run holds the lock, the task fails with the run lock's message, RV(busy) and RV(holder) (what the
    C(runbook) CLI maps to exit code 3) and sets no fact, so the caller's C(always) section releases nothing.
  - When a step after the lock fails, the lock is released before the task fails.
  - The reads use the variables C(dns_provider), C(dns_zone), C(dns_route53_zone_id), C(dns_aws_endpoint_url) and
    C(dns_timeout), the check C(dns_records) and C(dns_region_addresses), and the lock C(dr_lock_dir), each
    templated only after the parameters passed. The TSIG key is not used (queries are not signed).
  - The plan reads the runbook's parameters C(records), C(region), C(values), C(rollback_of), C(expected_values),
    C(confirmed_values), C(allow_apex), C(max_records), C(type) and C(force) (the C(dns_cutover) runbook's spec).
  - The TTL warnings of the plan (a TTL longer than what is left of the runbook's C(rto_seconds)) are the task's
    warnings.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.begin
  - erlmcp.dr.begin.contract
attributes:
  check_mode:
    support: full
    description: Reads the servers and only inspects the lock (takes nothing), as M(erlmcp.dr.run_lock) does.
  platform:
    support: full
    platforms: all
    description: The reads speak DNS (or the Route 53 API) from the controller.
notes:
  - Used by the runbook C(playbooks/dns_cutover.yml); docs/dns.md describes the plan and its guard.
"""

EXAMPLES = r"""
- name: Start - parameters, inventory, lock the zone, read every authoritative server, plan what is missing
  erlmcp.dr.dns_begin:
    runbook: dns_cutover
    contract:
      description: the DNS runbooks (docs/dns.md, inventory contract)
      groups:
        dns:
          min_hosts: 1
          host_vars:
            dns_host: {type: str, required: true}
            dns_port: {type: int}
            dns_role: {type: str}
      vars:
        dns_zone: {type: str, required: true}
        dns_region_addresses: {type: dict}

- name: Gate - refuse, touching nothing
  ansible.builtin.fail:
    msg: "{{ ansible_facts['dr_plan'].reason }}"
  when: ansible_facts['dr_plan'].action == 'refuse'
"""

RETURN = r"""
ansible_facts:
  description: Facts set by the task.
  returned: success
  type: dict
  contains:
    dr:
      description: Parameter names to their validated values, defaults filled in, secrets left out.
      type: dict
      returned: success
      sample: {"region": "b", "type": "A", "force": false, "wait_timeout": 60}
    dr_plan:
      description:
        - The plan made from the read taken under the lock - C(action) (C(change), C(none) or C(refuse)),
          C(reason), C(records) (per record C(name), C(current), C(target), C(expected) (the guard), C(ttl),
          C(change)), C(target), C(rollback_of), C(type) and C(warnings).
      type: dict
      returned: success
      sample: {"action": "change", "reason": null, "target": ["127.0.1.2"], "type": "A", "rollback_of": null,
               "warnings": [], "records": [{"name": "api.erlmcp.lab.", "current": ["127.0.1.1"],
               "target": ["127.0.1.2"], "expected": ["127.0.1.1"], "ttl": 30, "change": true}]}
    dns_begin_lock:
      description: The result of M(erlmcp.dr.run_lock); C(key) is the lock's key.
      type: dict
      returned: success
      sample: {"key": "dns:erlmcp.lab.", "held": true, "acquired": true, "busy": false}
    dr_dns_servers:
      description: The inventory's authoritative servers (C(name), C(host), C(port), C(role)), the primary first;
        empty for Route 53.
      type: list
      elements: dict
      returned: success
parameters:
  description: The validated parameters with defaults; secrets shown as C(********).
  returned: once the parameters passed
  type: dict
hosts:
  description: The inventory hosts checked, by group.
  returned: once the inventory passed
  type: dict
  sample: {"dns": ["dns-primary", "dns-secondary"]}
inventory_sources:
  description: The inventory sources checked.
  returned: once the inventory passed
  type: list
  elements: str
records:
  description: What M(erlmcp.dr.dns_info) returned for each record, read under the lock.
  returned: success
  type: list
  elements: dict
lock:
  description: The same as the fact C(dns_begin_lock).
  returned: once the lock was tried
  type: dict
durations:
  description: Seconds each step took (C(parameters), C(inventory), C(check), C(lock), C(read), C(plan)).
  returned: once the inventory passed
  type: dict
  sample: {"parameters": 0.002, "inventory": 0.003, "check": 0.001, "lock": 0.004, "read": 0.02, "plan": 0.001}
busy:
  description: True when the task failed because another run holds the zone's lock (see RV(holder)).
  returned: when the lock was tried and not taken
  type: bool
holder:
  description: Who holds the lock (run id, runbook, operator, PID, host, start time), as M(erlmcp.dr.run_lock) says.
  returned: when RV(busy)
  type: dict
lock_released:
  description: Whether the lock this task took was released because a step after it failed.
  returned: when the read or the plan failed after the lock
  type: bool
msg:
  description: What failed, the failing step's own message (for a record that could not be read, naming it).
  returned: failure
  type: str
parameter_errors:
  description: Every problem of the parameters, as M(erlmcp.dr.runbook_params) returns them.
  returned: when the parameters are wrong
  type: list
  elements: str
problems:
  description: Every problem of the inventory (as M(erlmcp.dr.inventory_contract) returns them), or of the
    records and the target.
  returned: when the inventory, the records or the target are wrong
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import controller_only  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.begin_spec import begin_argument_spec  # noqa: E402


def argument_spec():
    """The options of erlmcp.dr.dns_begin (its action plugin validates the task against them)."""
    return begin_argument_spec()


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    controller_only(module, "erlmcp.dr.dns_begin")


if __name__ == "__main__":
    main()
