# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.app_db_config: when the file lives on this machine (a local connection, no become),
the engine computes the config and writes the file in the controller's worker (no module shipped, no interpreter
started: the task costs what its atomic write costs, or with nodes its read too); else the module is shipped to the host
as usual."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._app_config import run
from ansible_collections.erlmcp.dr.plugins.module_utils._module import run_on_controller, warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import POSTGRES
from ansible_collections.erlmcp.dr.plugins.modules.app_db_config import SPEC_CHECKS, argument_spec

warm_driver(POSTGRES)  # with nodes, the engine reads the cluster in the worker


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        super(ActionModule, self).run(tmp, task_vars)
        return run_on_controller(self, task_vars or {}, "erlmcp.dr.app_db_config", argument_spec(), run,
                                 needs=_reads_the_cluster, **SPEC_CHECKS)


def _reads_the_cluster(params):
    """Only with nodes (a read of the cluster here) does the engine need psycopg."""
    return POSTGRES if params.get("cluster") is None else ()
