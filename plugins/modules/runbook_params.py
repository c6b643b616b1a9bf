#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# The argument spec is here, with the documentation; the work is done on the controller by the action plugin
# plugins/action/runbook_params.py, which validates its task against argument_spec().

from __future__ import annotations

DOCUMENTATION = r"""
module: runbook_params
short_description: A runbook's parameters, read as data (never templated) and validated once
version_added: "0.1.0"
description:
  - The first task of every erlmcp.dr runbook. Reads each parameter of the runbook's spec from the
    play's variables (extra vars from the CLI, the Python API, C(ansible-playbook -e) or an AWX survey)
    B(without templating it).
  - A value that Ansible would evaluate as a template (a trusted string containing C({{), C({%) or C({#),
    for example one given with C(ansible-playbook -e) or an AWX survey) is refused before anything else;
    runbook parameters are data. Values tagged C(!unsafe), as the erlmcp_dr runner writes every value,
    are plain data whatever they contain, and are validated like any other.
  - Then checks types, choices and required parameters with Ansible's own argument spec validator, and
    the C(min)/C(max) ranges the spec's options may carry (ints must also fit in 64 bits). Every problem is
    listed, each naming its parameter, the value's type and value (never a secret's) and what was expected.
  - Sets the fact C(dr) to the validated values with defaults filled in, leaving out secrets (C(no_log)
    options); tasks read those from their variables directly.
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  spec:
    description:
      - The runbook's parameters, an Ansible argument spec whose options may also carry C(min) and C(max)
        (numbers).
      - Defaults to the play variable C(runbook.parameters), read raw.
    type: dict
attributes:
  check_mode:
    support: full
    description: Changes nothing; runs the same in check mode.
  diff_mode:
    support: none
    description: There is nothing to compare; nothing changes.
  action:
    support: full
    description: Runs as an action plugin on the controller.
  platform:
    support: full
    platforms: all
    description: Needs no connection to a host.
notes:
  - Runs on the controller (an action plugin); it needs no connection to a host.
"""

EXAMPLES = r"""
- name: Resolve the runbook's parameters (types, ranges and defaults from the spec)
  erlmcp.dr.runbook_params:

- name: Validate against an explicit spec
  erlmcp.dr.runbook_params:
    spec:
      wait_timeout:
        type: int
        default: 60
        min: 1
        max: 3600
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
      sample: {"candidate": "pg-b", "wait_timeout": 60}
parameters:
  description: The validated values with defaults; secrets shown as C(********).
  returned: success
  type: dict
  sample: {"candidate": "pg-b", "wait_timeout": 60, "pg_login_password": "********"}
parameter_errors:
  description: Every problem found, one per entry.
  returned: failure
  type: list
  elements: str
  sample: ["parameter 'wait_timeout' is out of range: got int 0 (below the minimum 1); expected an int from 1 to 3600"]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import controller_only  # noqa: E402


def argument_spec():
    """The options of erlmcp.dr.runbook_params (its action plugin validates the task against them)."""
    return dict(spec=dict(type="dict"))


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    controller_only(module, "erlmcp.dr.runbook_params")


if __name__ == "__main__":
    main()
