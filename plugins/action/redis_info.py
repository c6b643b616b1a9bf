# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.redis_info: its engine runs in the controller
(it only speaks the Redis protocol, see _module.run_on_controller)."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.client import REDIS
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.info import run
from ansible_collections.erlmcp.dr.plugins.modules.redis_info import argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.engine_action import EngineAction

warm_driver(REDIS)


class ActionModule(EngineAction):
    MODULE = "erlmcp.dr.redis_info"
    ENGINE = staticmethod(run)
    ARGUMENT_SPEC = staticmethod(argument_spec)
    NEEDS = REDIS
