# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running another action plugin inside this task's worker: how the one-task start (begin.py) and end (run_end) are
made of the collection's own actions, so their code, checks and messages are the ones used everywhere."""

from __future__ import annotations


def run_action(action, name, args, task_vars, check_mode=None):
    """Run the action plugin `name` in this worker on a copy of `action`'s task with `args` (how
    ansible.builtin.template runs copy); its result."""
    task = action._task.copy()
    task.args = dict(args)
    if check_mode is not None:
        task.check_mode = check_mode
    other = action._shared_loader_obj.action_loader.get(
        name, task=task, connection=action._connection, play_context=action._play_context, loader=action._loader,
        templar=action._templar, shared_loader_obj=action._shared_loader_obj)
    return other.run(task_vars=task_vars)
