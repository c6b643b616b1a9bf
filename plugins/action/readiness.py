# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.readiness: its engine runs in the controller (it only reads, over SQL, the Redis
protocol, DNS, HTTP and TLS, and its probes run at once in threads; see _module.run_on_controller)."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES
from ansible_collections.erlmcp.dr.plugins.module_utils._region.readiness import run
from ansible_collections.erlmcp.dr.plugins.modules.readiness import argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.engine_action import EngineAction

warm_driver(POSTGRES)


class ActionModule(EngineAction):
    MODULE = "erlmcp.dr.readiness"
    ENGINE = staticmethod(run)
    ARGUMENT_SPEC = staticmethod(argument_spec)
    NEEDS = POSTGRES
