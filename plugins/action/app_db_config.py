# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.app_db_config: when the file lives on this machine (a local connection, no become),
the engine computes the config and writes the file in the controller's worker (no module shipped, no interpreter
started: the task costs what its atomic write costs, or with nodes its read too); else the module is shipped to the host
as usual."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._app.db_config import run
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES
from ansible_collections.erlmcp.dr.plugins.modules.app_db_config import SPEC_CHECKS, argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.engine_action import EngineAction

warm_driver(POSTGRES)  # with nodes, the engine reads the cluster in the worker


def _reads_the_cluster_needs(params):
    """Only with nodes (a read of the cluster here) does the engine need psycopg."""
    return POSTGRES if params.get("cluster") is None else ()


class ActionModule(EngineAction):
    MODULE = "erlmcp.dr.app_db_config"
    ENGINE = staticmethod(run)
    ARGUMENT_SPEC = staticmethod(argument_spec)
    NEEDS = staticmethod(_reads_the_cluster_needs)
    SPEC_RULES = SPEC_CHECKS
