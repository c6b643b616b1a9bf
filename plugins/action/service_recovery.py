# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.service_recovery: its engine (module_utils/_services/recovery.py) runs in the
controller, like pg_begin's: it runs each service's start command and samples health URLs and the region's
database and Redis as a client would, so no module is shipped and the gates of one level run as threads here."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES
from ansible_collections.erlmcp.dr.plugins.module_utils._services.recovery import run
from ansible_collections.erlmcp.dr.plugins.modules.service_recovery import argument_spec, needs_psycopg
from ansible_collections.erlmcp.dr.plugins.plugin_utils.engine_action import EngineAction

warm_driver(POSTGRES)


class ActionModule(EngineAction):
    MODULE = "erlmcp.dr.service_recovery"
    ENGINE = staticmethod(run)
    ARGUMENT_SPEC = staticmethod(argument_spec)
    NEEDS = staticmethod(lambda params: POSTGRES if needs_psycopg(params) else ())
