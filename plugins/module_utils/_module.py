# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How every erlmcp.dr module ends: check for psycopg, run its engine, exit or fail with its facts.

Every engine has one shape, run(params, check_mode, diff, warn), and returns the result dict or
raises ModuleFailure (message + the facts gathered so far); kubernetes.core's runner does the same.
"""

from __future__ import annotations

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import ModuleFailure, psycopg_import_error


def execute(module, run, *, needs_psycopg=True):
    """Call run(params, check_mode=, diff=, warn=module.warn) and hand its outcome to Ansible."""
    if needs_psycopg:
        missing = psycopg_import_error()
        if missing is not None:
            module.fail_json(msg=missing_required_lib("psycopg"), exception=str(missing))
    try:
        result = run(module.params, check_mode=module.check_mode, diff=module._diff, warn=module.warn)
    except ModuleFailure as exc:
        module.fail_json(msg=str(exc), **exc.facts)
    module.exit_json(**result)
