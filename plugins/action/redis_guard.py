# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.redis_guard: take the Redis guard (module_utils/_guards/redis_guard.py) for this run.

It starts the guard's holder on the controller; the holder watches this worker's parent, the ansible-playbook
process, and lets go of every member when it ends (normally or killed). The result's `guard` is what
erlmcp.dr.redis_promote re-checks right before the promotion. Another run holding the guard fails this task with
`busy` and `holder` (what the runbook CLI maps to exit 3, as for a held run lock).
"""

from __future__ import annotations

import os
import time

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._guards import redis_guard as _redis_guard
from ansible_collections.erlmcp.dr.plugins.modules.redis_guard import argument_spec

# The inventory's explicit opt-out, for controllers that cannot reach the members' Redis ports.
GUARD_VAR = "dr_redis_guard"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec())
        result["changed"] = False
        if not args["acquire_seconds"] > 0:
            return dict(result, failed=True, msg="acquire_seconds is %s: expected a number of seconds greater than "
                        "0 (acquire_seconds)" % args["acquire_seconds"])
        why_not = self._not_taken(task_vars)
        if why_not:
            result["guard"] = dict(enabled=False, held=False, token=None, msg=why_not)
            return result
        started = time.monotonic()
        answer = _redis_guard.start(args["members"], _redis_guard.new_token(args["run_id"]), os.getppid(),
                                    user=args["login_user"], password=args["login_password"],
                                    acquire_seconds=args["acquire_seconds"])
        guard = dict(enabled=True, held=bool(answer.get("ok")), token=answer.get("token") if answer.get("ok") else None,
                     pid=answer.get("pid"), held_on=answer.get("held") or [], missing=answer.get("missing") or [],
                     majority=answer.get("majority"), total=answer.get("total"), msg=answer.get("msg"),
                     holders=answer.get("holders") or [], seconds=round(time.monotonic() - started, 4))
        result.update(guard=guard, msg=answer.get("msg"))
        if not guard["held"] and guard["holders"]:
            # Another run (from this controller or another) announces or holds it: the same "busy" as a held run lock.
            result.update(failed=True, busy=True, holder=_holder(guard["holders"]))
        # Too few members answer and no other run is in sight: not a failure here - erlmcp.dr.redis_promote refuses
        # to promote without the guard, and a run with nothing to promote still reports what it found.
        return result

    def _not_taken(self, task_vars):
        """Why this run takes no guard, or None: check mode changes nothing; dr_redis_guard: false opts out."""
        if self._task.check_mode:
            return "not taken in check mode (nothing is changed)"
        value = task_vars.get(GUARD_VAR)
        if value is not None:
            templar = self._templar.copy_with_new_env(available_variables=task_vars)
            if not boolean(templar.template(value), strict=False):
                return "%s is false in the inventory: this run takes no Redis guard" % GUARD_VAR
        return None


def _holder(holders):
    """The other run, in the run lock's holder shape (run_id, host, since: what the CLI's busy message names)."""
    first = sorted(holders, key=lambda h: h.get("state") != _redis_guard.HOLD)[0]
    return {"run_id": _redis_guard.run_id_of(first.get("token")), "host": (first.get("addr") or "").rsplit(":", 1)[0],
            "since": "%ss ago" % first.get("age") if first.get("age") is not None else "",
            "guard": sorted(set(h.get("token") for h in holders)),
            "members": sorted(set(h.get("member") for h in holders))}
