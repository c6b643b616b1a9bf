# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.pg_restore_in_place: its engine runs in the controller when the node is this machine (see
_module.run_on_controller), else the module is shipped to the node."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.in_place import run
from ansible_collections.erlmcp.dr.plugins.modules.pg_restore_in_place import argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.engine_action import EngineAction

warm_driver(POSTGRES)


class ActionModule(EngineAction):
    MODULE = "erlmcp.dr.pg_restore_in_place"
    ENGINE = staticmethod(run)
    ARGUMENT_SPEC = staticmethod(argument_spec)
    NEEDS = POSTGRES
