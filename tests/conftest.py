"""Settings every test shares: the collection runs the way ansible-core 2.24 will run it.

Facts are not injected as top-level variables (INJECT_FACTS_AS_VARS=false: the default true is deprecated in
ansible-core 2.20 and removed in 2.24), for every ansible-playbook, ansible-runner and module run the tests start,
whichever ansible.cfg they read (the wheel's tests run outside the checkout). A run can still say otherwise in its
own environment.
"""

from __future__ import annotations

import os

os.environ.setdefault("ANSIBLE_INJECT_FACT_VARS", "false")
