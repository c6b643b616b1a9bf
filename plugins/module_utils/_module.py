# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How every erlmcp.dr module ends: check for psycopg, run its engine, exit or fail with its facts.

Every module returns the same shape this way (kubernetes.core's runner does the same): the
engine's result dict on success, or fail_json with the engine's message and the facts it had
gathered so far.
"""

from __future__ import annotations

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import PSYCOPG_IMPORT_ERROR, ModuleFailure


def execute(module, run, needs_psycopg=True, **options):
    """Call run(params, check_mode=, diff=, **options) and hand its outcome to Ansible."""
    if needs_psycopg and PSYCOPG_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=str(PSYCOPG_IMPORT_ERROR))
    try:
        result = run(module.params, check_mode=module.check_mode, diff=module._diff, **options)
    except ModuleFailure as exc:
        module.fail_json(msg=str(exc), **exc.facts)
    module.exit_json(**result)
