# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.health_check: its engine runs in the controller when the target is this machine
(it only speaks HTTP, TCP, SQL and the Redis protocol; see _module.run_on_controller). A region check runs
several of them back to back: this saves shipping the module and starting an interpreter for each."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._region.health import run
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES
from ansible_collections.erlmcp.dr.plugins.modules.health_check import REQUIRED_IF, argument_spec, needs_psycopg
from ansible_collections.erlmcp.dr.plugins.plugin_utils.engine_action import EngineAction

warm_driver(POSTGRES)


class ActionModule(EngineAction):
    MODULE = "erlmcp.dr.health_check"
    ENGINE = staticmethod(run)
    ARGUMENT_SPEC = staticmethod(argument_spec)
    NEEDS = staticmethod(lambda params: POSTGRES if needs_psycopg(params) else ())
    SPEC_RULES = {"required_if": REQUIRED_IF}
