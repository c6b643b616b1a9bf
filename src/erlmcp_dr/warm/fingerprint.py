"""Which zygote may serve a run: never one holding code or configuration older than what is on disk.

Two checks, both made by the run's guard before every run (standard library only):

- The **key** names the zygote (its socket is `z-<key>.sock`): a hash of what shaped the zygote's imports and
  settings at its start: the interpreter, the user and groups, the environment variables Ansible and Python read
  (`zygote_env`: ANSIBLE_*, PYTHON*, locale, PATH, HOME; the per-run ones left out), the Ansible config file in
  use with its size and mtime, and the working directory when no ANSIBLE_CONFIG names the file. A run whose key
  differs goes to another zygote, started for it.
- The **manifest**: every file the zygote loaded (the Python modules in its sys.modules: ansible-core, the
  collection's plugins and module_utils, erlmcp_dr, the drivers; plus the data files its preload read), each with
  its size and mtime in ns, written by the zygote beside its socket. The guard stats them all (a few ms); one file
  changed or gone means the zygote is stale: it is stopped and a fresh one started.

Files a zygote never loaded (playbooks, roles, the inventory, group_vars, a plugin it did not preload) are read by
the forked run itself, from disk, as a cold run reads them.
"""

from __future__ import annotations

import os
import sys

from erlmcp_dr.warm import c_json

# sha256 without hashlib where CPython has it: hashlib loads OpenSSL (_hashlib, about 2 ms of every guard's start);
# the digest is the same. (Not _sha2, 3.12's name: the execution environment's import check knows 3.11's modules.)
try:
    from _sha256 import sha256  # CPython <= 3.11
except ImportError:  # pragma: no cover - the interpreter in use decides
    from hashlib import sha256

# typing only for the annotations (never evaluated): the guard imports this module, and typing costs its start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Mapping, Optional

# Set per run by ansible-runner (the run's artifact folder; a jsonfile fact cache's, when a caller asks for one) or by
# the guard (the run's marker): never part of the key, and the forked run gets them with the rest of its environment.
PER_RUN = frozenset({"AWX_ISOLATED_DATA_DIR", "ANSIBLE_CACHE_PLUGIN_CONNECTION", "ERLMCP_DR_RUN"})
_PREFIXES = ("ANSIBLE_", "PYTHON", "LC_")
_NAMES = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "VIRTUAL_ENV",
                    "ERLMCP_DR_WARM_PRELOAD"})
# A value that may be a secret never goes into the zygote's environment (it lives for many runs): the forked run
# gets it from its own request. None of Ansible's import-time settings is one.
_SECRET_WORDS = ("PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL")


def zygote_env(environ: Mapping[str, str]) -> Dict[str, str]:
    """The part of a run's environment a zygote starts with: what shapes imports and Ansible's settings."""
    kept = {}
    for name, value in environ.items():
        if name in PER_RUN or any(word in name.upper() for word in _SECRET_WORDS):
            continue
        if name in _NAMES or name.startswith(_PREFIXES):
            kept[name] = value
    return kept


def config_file(environ: Mapping[str, str], cwd: str) -> Optional[str]:
    """The Ansible config file ansible-core would read (ANSIBLE_CONFIG, ./ansible.cfg, ~/.ansible.cfg,
    /etc/ansible/ansible.cfg: its own order), or None."""
    named = environ.get("ANSIBLE_CONFIG")
    candidates = [os.path.expanduser(named)] if named else []
    if named and os.path.isdir(candidates[0]):
        candidates = [os.path.join(candidates[0], "ansible.cfg")]
    candidates += [os.path.join(cwd, "ansible.cfg"), os.path.expanduser("~/.ansible.cfg"),
                   "/etc/ansible/ansible.cfg"]
    for path in candidates:
        if os.path.isfile(path):
            return os.path.abspath(path)
    return None


def key(environ: Mapping[str, str], cwd: str, kind: str = "playbook") -> str:
    """The zygote key of a run with this environment and working directory (24 hex digits); kind: what the zygote
    serves (ansible-playbook for a run's guard, or the `runbook` command: zygote.KINDS)."""
    config = config_file(environ, cwd)
    facts = {
        "kind": kind,
        "python": sys.executable,
        "version": sys.version,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": sorted(os.getgroups()),
        "env": sorted(zygote_env(environ).items()),
        "config": [config, *_stamp(config)] if config else None,
        # ./ansible.cfg counts only when ANSIBLE_CONFIG does not name the file; relative paths in settings too.
        "cwd": None if environ.get("ANSIBLE_CONFIG") else os.path.abspath(cwd),
    }
    return sha256(c_json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def _stamp(path: str) -> List[int]:
    try:
        info = os.stat(path)
    except OSError:
        return [-1, -1]
    return [info.st_size, info.st_mtime_ns]


def loaded_files(extra: Iterable[str] = ()) -> List[str]:
    """The files this process loaded its modules from, plus `extra`: what a zygote's manifest lists."""
    files = set(extra)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.isabs(path):
            files.add(path)
    return sorted(files)


def manifest(files: Iterable[str]) -> Dict[str, List[int]]:
    return {path: _stamp(path) for path in files}


def stale_files(recorded: object, limit: int = 3) -> Optional[List[str]]:
    """Up to `limit` files of a manifest ({path: [size, mtime_ns]}) that changed since the zygote loaded them ([]
    when none did), or None when it is not a manifest (then the zygote is not used)."""
    if not isinstance(recorded, dict) or not recorded:
        return None
    changed = []
    for file, stamp in recorded.items():
        if _stamp(file) != stamp:
            changed.append(file)
            if len(changed) >= limit:
                break
    return changed
