#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# The argument spec is here, with the documentation; the work is done on the controller by the action plugin
# plugins/action/lock_fence.py, which validates its task against argument_spec().

from __future__ import annotations

DOCUMENTATION = r"""
module: lock_fence
short_description: Check, right before a state-changing step, that this run still holds its run lock
version_added: "0.1.0"
description:
  - The run lock's fencing check as a step of its own. When this C(ansible-playbook) process took a run lock in a
    shared store (C(dr_lock_store=etcd), M(erlmcp.dr.run_lock)), it reads each key it took (a linearizable read)
    and fails unless the key still carries this run's fencing token (the key's create revision) and lease. A
    controller paused past its lease, whose lock another run may hold now, is so refused before the next step
    touches anything; an etcd that cannot be reached refuses too (fails closed).
  - Every engine step of the collection that has an action plugin runs the same check itself. The runbooks put this
    step right before the modules that are shipped without one (the Redis modules today).
  - A run that holds no lock in a shared store (the directory store, the default) passes at once.
  - Runs on the controller only; never reports C(changed). In check mode it checks nothing (a plan takes no lock).
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  before:
    description:
      - The step it guards, named in the refusal.
    type: str
    default: ""
attributes:
  action:
    support: full
    description: Runs as an action plugin on the controller.
  check_mode:
    support: full
    description: Checks nothing (a plan takes no lock); RV(checked) is false.
  diff_mode:
    support: none
    description: No diff.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller.
notes:
  - The design and the tests are in docs/design.md, One writer, A shared store for AWX with several execution nodes.
seealso:
  - module: erlmcp.dr.run_lock
"""

EXAMPLES = r"""
- name: Check the run still holds its lock before the promotion
  erlmcp.dr.lock_fence:
    before: promote the Redis candidate
  when: redis_begin_lock.store | default('') == 'etcd'
"""

RETURN = r"""
fenced:
  description: Whether the step was refused because this run no longer holds its run lock.
  returned: always
  type: bool
checked:
  description: Whether there was a lock in a shared store to check.
  returned: always
  type: bool
fencing_tokens:
  description: The fencing token of each run lock key this run holds in a shared store.
  returned: always
  type: dict
  sample: {"redis:127.0.0.1:6379,127.0.0.1:6380": 42}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import controller_only  # noqa: E402


def argument_spec():
    """The options of erlmcp.dr.lock_fence (its action plugin validates the task against them)."""
    return dict(before=dict(type="str", default=""))


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    controller_only(module, "erlmcp.dr.lock_fence")


if __name__ == "__main__":
    main()
