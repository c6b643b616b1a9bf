# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.redis_promote: its engine runs in the controller (it only speaks the Redis protocol,
see _module.run_on_controller, whose run-lock fencing check comes first), with the Redis guard re-checked right before
the promotion as in the module (_redis_promote.check_guard)."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.client import REDIS
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.promote import run
from ansible_collections.erlmcp.dr.plugins.modules.redis_promote import argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.engine_action import EngineAction

warm_driver(REDIS)


class ActionModule(EngineAction):
    MODULE = "erlmcp.dr.redis_promote"
    ENGINE = staticmethod(run)
    ARGUMENT_SPEC = staticmethod(argument_spec)
    NEEDS = REDIS
