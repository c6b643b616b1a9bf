"""The parameters' check remembered by content, so a `runbook` process that checks what it checked before does not
import Ansible's validator (issue 19: every run's fixed cost, docs/speed-failover.md).

params.validate runs the collection's runbook_params.validate, which imports ansible-core's ArgumentSpecValidator
(ansible.module_utils.common.arg_spec and with it the data-tagging modules, whose dataclasses are built at import:
not saved by bytecode). That import was the largest piece left in a warm run's `runbook` process before its guard.

A check that PASSED is stored under a key that is everything its answer depends on:

- the runbook's spec and the values given (canonical JSON, strict: only dict/list/str/int/float/bool/None, finite
  numbers, string keys; anything else is not cached, e.g. a YAML date, a tuple from the Python API);
- the interpreter (path and version) and `sys.path` (where `ansible` and the collection are imported from);

and its entry carries the manifest of every file the check loaded (runbook_params.py, the ansible modules: size and
mtime in ns, warm/fingerprint.py's manifest, the zygote's rule): one changed or gone, and the entry is not used.

Never cached, so never written: a check whose values hold a secret (a `no_log` option given: nothing secret at rest,
not even a hash of it), a spec with a `path` option (ansible expands ~ and $VARS in it: the answer depends on the
environment), a failed check (it ends the command; its message is made by the validator anyway). The cache lives in
<state home>/cache/params/, one file per runbook with its last MAX_ENTRIES checks (0700; files 0600, written
atomically); a torn entry, or a file another user owns or may write, is a miss. The playbook's
first task (erlmcp.dr.runbook_params) checks the values again in every run, as before.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from erlmcp_dr import paths
from erlmcp_dr.warm import fingerprint

FORMAT = 1
MAX_ENTRIES = 8  # per runbook: its most recent passed checks (each entry carries its manifest)
# The modules whose files the check's answer depends on: Ansible's (the validator) and the collection's rules.
_VALIDATOR_MODULES = ("ansible", "ansible_collections.erlmcp.dr.plugins.module_utils")


def cache_dir() -> Path:
    return paths.state_home() / "cache" / "params"


def key(spec: Mapping[str, Any], given: Mapping[str, Any]) -> Optional[str]:
    """The cache key of checking `given` against `spec` here, or None when that check is not cached."""
    if _has_path_option(spec):
        return None
    paths.ensure_collection_importable()  # as the check itself does: the same sys.path in every process
    facts = {"format": FORMAT, "python": sys.executable, "version": sys.version, "sys_path": list(sys.path),
             "spec": spec, "given": given}
    text = canonical(facts)
    return hashlib.sha256(text.encode()).hexdigest() if text is not None else None


def canonical(value: Any) -> Optional[str]:
    """`value` as sorted JSON when it is plain data that JSON gives back unchanged (same types), else None."""
    if not _plain(value):
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if type(value) is list:
        return all(_plain(item) for item in value)
    if type(value) is dict:
        return all(isinstance(name, str) and _plain(item) for name, item in value.items())
    return False


def _has_path_option(spec: Any) -> bool:
    if not isinstance(spec, Mapping):
        return False
    for option in spec.values():
        option = option if isinstance(option, Mapping) else {}
        if "path" in (option.get("type"), option.get("elements")) or _has_path_option(option.get("options")):
            return True
    return False


def lookup(runbook_name: str, cache_key: str) -> Optional[Dict[str, Any]]:
    """The values a passed check returned for this key, when its entry is there and every file it loaded is
    unchanged; else None."""
    path = _file(runbook_name)
    if not _own_private_file(path):
        return None
    entry = paths.read_json_object(path).get(cache_key)
    if not isinstance(entry, dict) or not isinstance(entry.get("values"), dict):
        return None
    if fingerprint.stale_files(entry.get("files")) != []:
        return None
    return dict(entry["values"])


def store(runbook_name: str, cache_key: str, values: Mapping[str, Any]) -> None:
    """Remembers a passed check (best effort: a cache that cannot be written costs the next run the import)."""
    if canonical(dict(values)) is None:
        return
    entry = {"values": dict(values), "files": fingerprint.manifest(validator_files())}
    path = _file(runbook_name)
    try:
        for folder in (path.parent.parent, path.parent):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        entries = {name: old for name, old in paths.read_json_object(path).items() if name != cache_key}
        kept = dict(list(entries.items())[-(MAX_ENTRIES - 1):])
        kept[cache_key] = entry
        paths.write_private_atomic(path, json.dumps(kept) + "\n")
    except OSError:
        return


def validator_files() -> List[str]:
    """The files of the modules the check imported: ansible-core's and the collection's module_utils."""
    files = set()
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "ansible" or name.startswith(_VALIDATOR_MODULES[1]):
            path = getattr(module, "__file__", None)
            if isinstance(path, str) and os.path.isabs(path):
                files.add(path)
    return sorted(files)


def _own_private_file(path: Path) -> bool:
    """Only an entry file this user owns, that nobody else may write, is trusted (a shared ERLMCP_DR_HOME)."""
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def _file(runbook_name: str) -> Path:
    safe = "".join(char if char.isalnum() or char in "._-" else "_" for char in runbook_name) or "_"
    return cache_dir() / f"{safe}.json"


def checked(runbook_name: str, spec: Mapping[str, Any], given: Mapping[str, Any],
            check: Callable[[], Dict[str, Any]], secret: bool) -> Dict[str, Any]:
    """`check()` (the values, or it raises) answered from the cache when it can be; its answer stored when it may."""
    cache_key = None if secret else key(spec, given)
    if cache_key is not None:
        found = lookup(runbook_name, cache_key)
        if found is not None:
            return found
    values = check()
    if cache_key is not None:
        store(runbook_name, cache_key, values)
    return values
