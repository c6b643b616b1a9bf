# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.dns_record: its engine runs in the controller's worker
(it only speaks DNS or the Route 53 API, see _module.run_on_controller): no module shipped,
dnspython already imported."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._dns.base import DNS, warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._dns.record import run
from ansible_collections.erlmcp.dr.plugins.modules.dns_record import REQUIRED_IF, argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.engine_action import EngineAction

warm_driver()


class ActionModule(EngineAction):
    MODULE = "erlmcp.dr.dns_record"
    ENGINE = staticmethod(run)
    ARGUMENT_SPEC = staticmethod(argument_spec)
    NEEDS = DNS
    SPEC_RULES = {"required_if": REQUIRED_IF}
