# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared documentation of the one-task starts (erlmcp.dr.pg_begin, erlmcp.dr.dns_begin, erlmcp.dr.redis_begin): the
options every start takes (module_utils/_common/begin_spec.py, begin_argument_spec) and the attributes they share;
CONTRACT (erlmcp.dr.begin.contract) for the starts whose caller gives the inventory contract (redis_begin keeps its
own)."""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  runbook:
    description: The runbook's name, recorded in the lock's holder record.
    type: str
    required: true
  spec:
    description:
      - The runbook's parameter spec (M(erlmcp.dr.runbook_params) O(erlmcp.dr.runbook_params#module:spec));
        default the play variable C(runbook.parameters), read raw.
    type: dict
attributes:
  diff_mode:
    support: none
    description: Nothing is changed; the lock is bookkeeping.
  action:
    support: full
    description: Runs as an action plugin on the controller.
"""

    CONTRACT = r"""
options:
  contract:
    description:
      - The inventory contract, the options of M(erlmcp.dr.inventory_contract) (C(description), C(groups),
        C(vars)).
    type: dict
    required: true
"""
