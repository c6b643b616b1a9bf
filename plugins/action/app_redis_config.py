# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.app_redis_config: when the file lives on this machine (a local connection, no
become), the engine builds the config from the redis_info result it is given and writes the file in the controller's
worker (no module shipped, no interpreter started); else the module is shipped to the host as usual."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._app.redis_config import run
from ansible_collections.erlmcp.dr.plugins.modules.app_redis_config import argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.engine_action import EngineAction


class ActionModule(EngineAction):
    MODULE = "erlmcp.dr.app_redis_config"
    ENGINE = staticmethod(run)
    ARGUMENT_SPEC = staticmethod(argument_spec)
    NEEDS = ()  # no driver: the read it writes from is given (info)
