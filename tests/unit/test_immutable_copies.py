"""A warm run's deep copies of ansible-core's tagged values (erlmcp_dr.warm.immutable_copies) give what ansible-core's
own give: equal values with equal tags; only immutable tagged scalars (and their immutable tags) are shared, never a
container, and never a scalar carrying a tag whose type is not known to be immutable.

In a child interpreter: install() changes ansible-core's classes, and this test process stays as shipped.
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import copy, json, sys
from ansible.parsing.dataloader import DataLoader
from ansible.module_utils._internal._datatag import AnsibleTagHelper
from ansible.module_utils._internal._datatag._tags import Deprecated
from erlmcp_dr.warm import immutable_copies

path = sys.argv[1]
loader = DataLoader()

def walk(value, out, where="$"):
    out.append((where, type(value).__name__, repr(value) if not isinstance(value, (dict, list)) else None,
                sorted(repr(tag) for tag in AnsibleTagHelper.tags(value))))
    if isinstance(value, dict):
        for key, item in value.items():
            walk(key, out, where + ".key")
            walk(item, out, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            walk(item, out, f"{where}[{index}]")
    return out

def identities(original, copied, out):
    out["scalars"] += isinstance(original, str)
    out["shared_scalars"] += isinstance(original, str) and original is copied
    out["shared_containers"] += isinstance(original, (dict, list)) and original is copied
    if isinstance(original, dict):
        for key in original:
            identities(original[key], copied[key], out)
    elif isinstance(original, list):
        for a, b in zip(original, copied):
            identities(a, b, out)
    return out

shipped = walk(loader.load_from_file(path, cache="none", trusted_as_template=True), [])
deprecated = AnsibleTagHelper.tag("old", [Deprecated(msg="gone")])
changed = immutable_copies.install()
parsed = loader.load_from_file(path, cache="none", unsafe=True, trusted_as_template=True)
copied = copy.deepcopy(parsed)
deprecated_copy = copy.deepcopy(deprecated)
print(json.dumps({
    "changed": changed,
    "same_as_shipped": walk(copied, []) == shipped,
    "identities": identities(parsed, copied, {"scalars": 0, "shared_scalars": 0, "shared_containers": 0}),
    "deprecated_copied": deprecated_copy is not deprecated and deprecated_copy == deprecated
        and AnsibleTagHelper.tags(deprecated_copy) == AnsibleTagHelper.tags(deprecated),
    "loaded_same": walk(loader.load_from_file(path, cache="none", trusted_as_template=True), []) == shipped,
}))
"""

INVENTORY = """\
all:
  children:
    postgres:
      hosts:
        pg-a: {pg_port: 5432, pg_data_dir: /srv/a, dr_region: a, weight: 1.5}
        pg-b: {pg_port: 5433, pg_data_dir: /srv/b, dr_region: b}
      vars:
        ansible_python_interpreter: '{{ ansible_playbook_python }}'
        pg_start_command: [pg_ctl, start, -D, /srv/a]
"""


def test_deep_copies_are_equal_with_equal_tags_sharing_only_immutable_scalars(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    done = subprocess.run([sys.executable, "-c", CHILD, str(inventory)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["changed"] == ["Origin", "TrustedAsTemplate", "SourceWasEncrypted", "VaultedValue",
                                 "_AnsibleTaggedStr", "_AnsibleTaggedInt", "_AnsibleTaggedFloat"]
    assert report["same_as_shipped"] and report["loaded_same"]
    counts = report["identities"]
    assert counts["scalars"] > 0 and counts["shared_scalars"] == counts["scalars"]
    assert counts["shared_containers"] == 0
    assert report["deprecated_copied"]
