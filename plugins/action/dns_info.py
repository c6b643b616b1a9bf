# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.dns_info: its engine runs in the controller's worker
(it only speaks DNS or the Route 53 API, see _module.run_on_controller)."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._dns.base import DNS, warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._dns.info import run
from ansible_collections.erlmcp.dr.plugins.modules.dns_info import argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.engine_action import EngineAction

warm_driver()


class ActionModule(EngineAction):
    MODULE = "erlmcp.dr.dns_info"
    ENGINE = staticmethod(run)
    ARGUMENT_SPEC = staticmethod(argument_spec)
    NEEDS = DNS
