# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.redis_begin: the start of the Redis runbooks (redis_backup, redis_restore,
redis_failover) in ONE task.

The order, the lock and its release on failure are the shared start's (plugins/plugin_utils/begin.py, also
erlmcp.dr.pg_begin's and erlmcp.dr.dns_begin's); this file supplies Redis's parts:
- the contract: the one Redis inventory contract (CONTRACT, docs/redis.md), with what a runbook needs beside it
  (redis_restore: every host's redis_start_command; redis_failover: dr_app_redis_config_path);
- `prepare`, before any server is asked: the members (_redis_plan.nodes) and the login, rendered only now that the
  parameters passed;
- the lock key: the members' endpoints (_redis_plan.lock_key), from the inventory, so the deployment is read once,
  under the lock (KEY_NEEDS_READ false);
- `hold`, for the plans that promote: the Redis guard (erlmcp.dr.redis_guard), released again when the start fails
  after it (a held guard otherwise lives until the ansible-playbook process ends);
- the reader: erlmcp.dr.redis_info on every member (its action plugin, with its checks and messages);
- the plan: PLANS[plan] over _redis_plan's pure decisions, on the read taken under the lock.

A refusal is a plan (`action: refuse`, `reason`), never a failure of this task: the runbook's gate fails on it and
its summary still shows the plan, as for DNS.
"""

from __future__ import annotations

import os

from ansible_collections.erlmcp.dr.plugins.module_utils._guards import redis_guard as _redis_guard
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import plan as redis_plan
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.client import REDIS
from ansible_collections.erlmcp.dr.plugins.modules.redis_begin import argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.begin import BeginAction

# The reads run in this task's worker: redis-py imported once, before the fork (see _common/module.py).
warm_driver(REDIS)

# The Redis contract is this plugin's, not the caller's: the three runbooks share it (docs/redis.md).
GROUP = "redis"
CONTRACT_DESCRIPTION = "the Redis runbooks (docs/redis.md, inventory contract)"
HOST_VARS = {
    "redis_host": {"type": "str", "required": True},
    "redis_port": {"type": "int", "required": True},
    "redis_data_dir": {"type": "path", "required": True},
    "redis_backup_dir": {"type": "path"},
    "redis_start_command": {"type": "list", "elements": "str"},
    "dr_region": {"type": "str"},
}
CONTROLLER_VARS = {
    "redis_password": {"type": "str", "no_log": True},
    "redis_login_user": {"type": "str"},
    "redis_backup_hmac_key": {"type": "str", "no_log": True},
    "dr_lock_dir": {"type": "path"},
    "dr_redis_guard": {"type": "bool"},
    "dr_app_redis_config_path": {"type": "path"},
    "redis_s3_bucket": {"type": "str"},
    "redis_s3_prefix": {"type": "str"},
    "redis_s3_endpoint_url": {"type": "str"},
    "redis_s3_region": {"type": "str"},
    "redis_s3_sse": {"type": "str", "choices": ["AES256", "aws:kms"]},
    "redis_s3_access_key": {"type": "str", "no_log": True},
    "redis_s3_secret_key": {"type": "str", "no_log": True},
}
# What a plan needs beside the shared contract: (host variables, controller variables) it requires.
REQUIRED_BY_PLAN = {
    "backup": ((), ()),
    "restore": (("redis_start_command",), ()),  # a re-run finishes a cut-off restore by starting the server
    "failover": ((), ("dr_app_redis_config_path",)),  # the application is pointed at the new primary
}
# The plans that promote take the Redis guard (_guards/redis_guard.py) by default: the run lock only excludes runs
# that share its folder, the guard excludes runs from any controller.
GUARDED_PLANS = ("failover",)
APP_CONFIG_VAR = "dr_app_redis_config_path"
LOGIN_VARS = (("login_user", "redis_login_user"), ("login_password", "redis_password"))
STORE_VARS = {"directory": "redis_backup_dir", "s3": "redis_s3_bucket"}


def contract(plan):
    """The inventory contract of the Redis runbook that runs `plan` (erlmcp.dr.inventory_contract's options)."""
    host_required, controller_required = REQUIRED_BY_PLAN[plan]
    host_vars = dict((name, dict(spec, required=True) if name in host_required else dict(spec))
                     for name, spec in HOST_VARS.items())
    controller = dict((name, dict(spec, required=True) if name in controller_required else dict(spec))
                      for name, spec in CONTROLLER_VARS.items())
    return {"description": CONTRACT_DESCRIPTION, "groups": {GROUP: {"min_hosts": 1, "host_vars": host_vars}},
            "vars": controller}


def store_refusal(target_plan, dr, hostvars, controller_vars):
    """The plan of a backup or restore whose store the inventory does not name: a refusal naming the variable
    (checked here, before anything is touched, as the contract cannot: which host needs it depends on the read)."""
    if target_plan.get("action") != "act":
        return target_plan
    store = dr.get("store") or "directory"
    if store == "directory":
        missing = (hostvars.get(target_plan["target"]) or {}).get(STORE_VARS[store]) is None
        where = "%s on %s" % (STORE_VARS[store], target_plan["target"])
    else:
        missing = controller_vars.get(STORE_VARS[store]) is None
        where = STORE_VARS[store]
    if not missing:
        return target_plan
    return dict(target_plan, action="refuse", reason="store=%s needs %s in the inventory (docs/redis.md, inventory "
                "contract); it is not defined" % (store, where))


def read_text(path):
    """The file's text, or '' when it cannot be read (no file yet: no failover recorded a primary)."""
    try:
        with open(os.path.expanduser(str(path))) as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return ""


class ActionModule(BeginAction):
    """Redis's parts of the one-task start (see the module's docstring)."""

    TRANSFERS_FILES = False  # the reads ship erlmcp.dr.redis_info through this task's connection when redis-py does
    # not import here (see _module.run_on_controller), so the connection stays required
    ARGUMENT_SPEC = staticmethod(argument_spec)
    KEY_NEEDS_READ = False  # the key is the members' endpoints, which the inventory names
    READ_PHASES = (None, "read")
    PREPARE_PHASE = "members"
    PLAN_SOURCE = "members' read"

    def contract(self, start):
        return contract(start.args["plan"])

    def prepare(self, start):
        task_vars = start.task_vars
        hosts = list((task_vars.get("groups") or {}).get(GROUP) or [])
        login = {}
        for option, name in LOGIN_VARS:
            value = self.rendered_or(task_vars, name)
            if value is not None:
                login[option] = value
        return dict(members=redis_plan.nodes(hosts, task_vars.get("hostvars") or {}), login=login)

    def read(self, start):
        return self.sub_action("erlmcp.dr.redis_info", dict(start.prepared["login"], nodes=start.prepared["members"]),
                               start.task_vars, check_mode=False)

    def lock_key(self, start):
        return redis_plan.lock_key(start.prepared["members"])

    def hold(self, start):
        if not self._guarded(start.args):
            return None
        login = start.prepared["login"]
        answer = start.timed("guard", self.sub_action, "erlmcp.dr.redis_guard", dict(
            members=start.prepared["members"], run_id=start.lock.get("run_id"), **login), start.task_vars)
        start.held = answer.get("guard") or {}
        start.result["guard"] = start.held
        if answer.get("failed"):
            # Another run holds it (from this controller or another): the same "busy" as a held run lock.
            return dict(msg=answer.get("msg"), busy=bool(answer.get("busy")), holder=answer.get("holder"))
        # Too few members answer and no other run is in sight: not a failure here - erlmcp.dr.redis_promote refuses
        # to promote without the guard, and a run with nothing to promote still reports what it found.
        return None

    def let_go(self, start):
        guard = start.held
        if guard and guard.get("held") and guard.get("pid"):
            _redis_guard.release(guard["pid"])

    def plan_name(self, start):
        return start.args["plan"]

    def plan(self, start):
        info, dr, task_vars = start.read, start.dr, start.task_vars
        if start.args["plan"] == "failover":
            recorded = redis_plan.recorded_primary(read_text(self.rendered(task_vars, APP_CONFIG_VAR)))
            return redis_plan.failover_candidate(info, dr.get("candidate") or None, dr.get("away_from") or None,
                                                 recorded)
        target = redis_plan.target(info, dr.get("node") or None, start.args["plan"])
        controller = dict((name, self.rendered_or(task_vars, name)) for name in STORE_VARS.values()
                          if name not in HOST_VARS)
        return store_refusal(target, dr, task_vars.get("hostvars") or {}, controller)

    def facts(self, start):
        return dict(dr_plan=start.plan, redis_assess_result=start.read, redis_begin_lock=start.lock,
                    redis_begin_nodes=start.prepared["members"],
                    redis_begin_guard=start.held if start.held is not None else {})

    def returned(self, start):
        return dict(nodes=start.read.get("nodes"), primaries=start.read.get("primaries"))

    # ------------------------------------------------------------------ Redis's settings

    def _guarded(self, args):
        """Whether this start takes the Redis guard: the plans that promote, unless `guard` says otherwise (the
        guard itself takes nothing in check mode, and honours the inventory's dr_redis_guard opt-out)."""
        if args["guard"] is not None:
            return args["guard"]
        return args["plan"] in GUARDED_PLANS
