# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.run_end: the end of a runbook in ONE task - the run lock released through
erlmcp.dr.run_lock (run in this worker, plugin_utils/sub_action), then the summary published as
ansible.builtin.set_stats publishes a custom stat (`ansible_stats` in the result, which ansible-core's strategy
reads from any action's result). Two tasks were two worker forks at the end of every runbook."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.modules.run_end import argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.sub_action import run_action

SUMMARY_STAT = "summary"  # the custom stat the CLI, erlmcp_dr.run() and AWX read


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec())
        lock = args["lock"] or {}
        result["changed"] = False  # the lock is bookkeeping (erlmcp.dr.run_lock never reports a change either)
        if _taken(lock):
            released = self._release(lock, task_vars or {})
            result["released"] = dict((key, value) for key, value in released.items() if key != "warnings")
            if released.get("warnings"):
                result["warnings"] = list(released["warnings"])
            if released.get("failed"):
                return dict(result, failed=True, msg=released.get("msg"))
        result["ansible_stats"] = dict(data={SUMMARY_STAT: args["summary"]}, per_host=False, aggregate=True)
        return result

    def _release(self, lock, task_vars):
        release = dict(key=lock["key"], state="absent")
        if lock.get("store_dir"):
            release["store_dir"] = lock["store_dir"]
        return run_action(self, "erlmcp.dr.run_lock", release, task_vars)


def _taken(lock):
    """Whether the start's lock result names a lock this run took: not empty, not failed (a busy lock is another
    run's), not skipped."""
    return bool(lock.get("key")) and not lock.get("failed") and not lock.get("skipped")
