#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# The argument spec is here, with the documentation; the work is done on the controller by the action plugin
# plugins/action/inventory_contract.py, which validates its task against argument_spec().

from __future__ import annotations

DOCUMENTATION = r"""
module: inventory_contract
short_description: Check that the inventory holds the groups, hosts and variables a playbook needs
version_added: "0.1.0"
description:
  - Checks the inventory on the controller before anything runs, and fails listing B(every) problem at once -
    a group that is missing or has too few hosts, a host without a variable it needs, a variable of the
    controller that is not defined, a value of the wrong type (naming the value's type and the expected one),
    and, when a group is missing, an inventory source that does not exist, does not parse (with the line) or is
    empty. The message names the inventory source(s) and points at the inventory contract in the collection's
    docs/design.md.
  - Values are read raw from the inventory, not through the templating that C(hostvars) applies. Only a value
    that Ansible trusts as a template (from an inventory file or the playbook, such as paths built from
    C({{ playbook_dir }})) is rendered, and only to check its type. A value marked unsafe is never rendered, and
    a secret (C(no_log)) is never rendered nor shown.
  - Runs on the controller only; it never connects to the managed hosts. Changes nothing.
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  groups:
    description:
      - The groups the playbook needs, by name. Each maps to a dictionary with C(min_hosts) (an integer, default
        1) and C(host_vars), an argument spec (variable name -> C(type), C(required), C(choices), C(elements),
        C(no_log), C(description)) that every host of the group must meet.
      - Types are C(str), C(int), C(float), C(bool), C(path), C(list), C(dict), C(raw). Values that Ansible
        converts (C("5432") for an C(int), as an INI inventory gives it) are accepted.
    type: dict
    default: {}
  vars:
    description:
      - An argument spec for the variables the play's own host (the controller, usually C(localhost)) needs,
        in the same form as C(host_vars); they come from the inventory's C(all) group, the play or extra vars.
    type: dict
    default: {}
  description:
    description:
      - What the contract is for (for the message), for example V(the PostgreSQL runbooks).
    type: str
    default: ""
attributes:
  action:
    support: full
    description: Runs as an action plugin on the controller.
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: No diff.
  platform:
    support: full
    platforms: all
    description: Runs on the controller.
seealso:
  - module: erlmcp.dr.run_lock
"""

EXAMPLES = r"""
# The contract of the PostgreSQL runbooks (the first task of each of their playbooks).
- name: Check the inventory before anything runs
  erlmcp.dr.inventory_contract:
    description: the PostgreSQL runbooks
    groups:
      postgres:
        min_hosts: 1
        host_vars:
          pg_host: {type: str, required: true, description: address the controller connects to}
          pg_port: {type: int, required: true}
          pg_data_dir: {type: path, required: true}
          pg_bin_dir: {type: path}
          pg_log_file: {type: path}
          dr_region: {type: str}
    vars:
      pg_login_user: {type: str, required: true}
      pg_replication_user: {type: str, required: true}
      dr_app_config_path: {type: path, required: true}
      pg_login_password: {type: str, no_log: true}
      pg_replication_password: {type: str, no_log: true}
      pg_login_db: {type: str}
      dr_primary_of_record: {type: str}

# With an inventory that has no postgres group and a non-numeric port the task fails with, for example:
#   The inventory does not meet the contract of the PostgreSQL runbooks: 2 problem(s).
#     - group 'postgres' is not in the inventory, expected at least 1 host(s) in it (groups found: databases)
#     - controller (localhost): pg_login_user is not defined, expected type str
#   Inventory source(s): /srv/dr/inventories/prod/hosts.yml.
#   What the inventory must hold: see docs/design.md, section 'Inventory contract'.
"""

RETURN = r"""
ok:
  description: Whether the inventory meets the contract.
  returned: always
  type: bool
  sample: true
hosts:
  description: The hosts checked, per group of O(groups).
  returned: always
  type: dict
  sample: {postgres: [pg-a, pg-b, pg-c]}
inventory_sources:
  description: The inventory sources Ansible read (C(ansible_inventory_sources)).
  returned: always
  type: list
  elements: str
  sample: [/srv/dr/inventories/prod/hosts.yml]
problems:
  description: Every problem found, one line each (the message lists them too).
  returned: when the inventory does not meet the contract
  type: list
  elements: str
  sample:
    - "host db-1 (group postgres): pg_port is 'abc' (str), expected type int"
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import controller_only  # noqa: E402


def argument_spec():
    """The options of erlmcp.dr.inventory_contract (its action plugin validates the task against them)."""
    return dict(
        groups=dict(type="dict", default={}),
        vars=dict(type="dict", default={}),
        description=dict(type="str", default=""),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    controller_only(module, "erlmcp.dr.inventory_contract")


if __name__ == "__main__":
    main()
