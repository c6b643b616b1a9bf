#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# The argument spec is here, with the documentation; the work is done on the controller by the action plugin
# plugins/action/composed_run.py, which validates its task against argument_spec().

from __future__ import annotations

DOCUMENTATION = r"""
module: composed_run
short_description: Runs a composed runbook (its workflow's steps as child runs) from plain Ansible or AWX
version_added: "0.1.0"
description:
  - Drives the composition engine of the erlmcp_dr package (the same as C(runbook run regional_failover)) from a
    playbook run by C(ansible-playbook) or an AWX job template.
  - Each step of the runbook's C(vars.runbook.workflow) runs as a child run of its own playbook, with its own run
    folder, timeline and summary. The lock over every target is held by this task from the first step to the last;
    another runbook on those targets meanwhile is refused. Before the point of no return a failed step undoes every
    completed step in reverse order; after it the run rolls forward only and returns the command that finishes it.
  - A run killed mid-move leaves a journal; the next run of the same runbook on the same targets resumes it.
  - Fails unless every step was verified. Does nothing in check mode (the playbook's plan is the check).
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  runbook:
    description: The composed runbook's name (a playbook whose C(vars.runbook.workflow) declares its steps).
    type: str
    required: true
  parameters:
    description: The runbook's checked parameters, the fact C(dr) set by M(erlmcp.dr.runbook_params).
    type: dict
    default: {}
  operator:
    description: Who runs it, recorded in the audit trail and the report.
    type: str
attributes:
  check_mode:
    support: none
    description: In check mode nothing runs (skipped); the playbook's own tasks are the plan.
  diff_mode:
    support: none
    description: Each step's child run reports its own changes.
  action:
    support: full
    description: Runs as an action plugin on the controller.
  platform:
    support: full
    platforms: all
    description: Needs no connection to a host; the steps connect to theirs.
requirements:
  - The erlmcp_dr Python package on the controller (the project's execution environment has it).
notes:
  - Needs exactly one inventory source (C(-i FILE)); the steps run their playbooks against it.
"""

EXAMPLES = r"""
- name: Run the regional failover's steps
  erlmcp.dr.composed_run:
    runbook: regional_failover
    parameters: "{{ ansible_facts['dr'] }}"
"""

RETURN = r"""
run_id:
  description: The composed run's id (its folder holds result.json, report.md and journal.json).
  returned: when the run started
  type: str
run_dir:
  description: The composed run's folder.
  returned: when the run started
  type: str
rc:
  description: 0 when every step was verified, 1 when the run failed, 2 for bad input, 3 when a target's lock is held.
  returned: always
  type: int
summary:
  description: The run's summary envelope (the engine's outcome under C(details)).
  returned: when the run started
  type: dict
resume_command:
  description: The command that finishes a move stopped after the point of no return.
  returned: when the run started
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import controller_only  # noqa: E402


def argument_spec():
    """The options of erlmcp.dr.composed_run (its action plugin validates the task against them)."""
    return dict(
        runbook=dict(type="str", required=True),
        parameters=dict(type="dict", default={}),
        operator=dict(type="str"),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=False)
    controller_only(module, "erlmcp.dr.composed_run")


if __name__ == "__main__":
    main()
