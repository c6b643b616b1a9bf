"""A composed run's inventory, parsed once by the run and handed to its child runs' warm ansible-playbook processes.

A regional failover runs seven child runs, each an ansible-playbook that parses the same inventory again: the lab's
20 KB YAML costs 10-20 ms of each child's start (ansible-core 2.19 tags every string with its origin), three children
starting at once on two cores. The composed run has parsed it already, with ansible-core's own loader
(compose/inventory.py), before its first step. Here:

- `Recorder` wraps that run's DataLoader: each file it loads (the inventory, its group_vars and host_vars) is kept as
  the loader returned it, pickled, with the arguments of the call and the file's identity (device, inode, size,
  modification and change times in ns) read before and after the read: a file that changed meanwhile, or that
  holds vault-encrypted data, is not kept (its plaintext must never be written down; the child decrypts it itself);
- `write` puts what was kept in a file of the composed run's own private folder (0600 in a 0700 folder beside the
  runs' private data dirs: the same place and rules as their extra vars, removed at the run's end, or by the next
  run's sweep when the run was killed);
- `install`, in a child's ansible-playbook forked by the warm zygote (zygote.become_run), when its environment names
  that file (ENV): DataLoader.load_from_file answers a call with the same file and arguments from the file's kept
  parse while the file's identity is unchanged; anything else (another file, other arguments, a file written since)
  is parsed as ansible-core does. A cold ansible-playbook ignores it.

Nothing of it is in the zygote: the file is read in the forked run only, and goes with it. The file is refused unless
it is a regular file of this user that nobody else may read or write (pickle runs code of the classes it names: only
the user's own file is trusted, as the user's own playbooks are).
"""

from __future__ import annotations

import os
import pickle
import stat
from typing import Any, Callable, Dict, Optional, Tuple

from erlmcp_dr.paths import file_identity

ENV = "ERLMCP_DR_PARSED_INVENTORY"
FILE_NAME = "parsed-inventory.pickle"
VAULT_MARK = b"$ANSIBLE_VAULT"  # ansible-vault's header, whole files and inline !vault values alike

Key = Tuple[str, bool, bool, bool]  # the resolved path, unsafe, json_only, trusted_as_template
Kept = Dict[Key, Tuple[Tuple[int, ...], bytes]]  # the call -> the file's identity when read, the pickled parse


class Recorder:
    """Keeps what `loader.load_from_file` returns for each file while it is installed on that loader instance."""

    def __init__(self, loader: Any) -> None:
        self.kept: Kept = {}
        self._loader = loader
        self._load: Callable[..., Any] = loader.load_from_file
        loader.load_from_file = self._recording

    def _recording(self, file_name: str, cache: str = "all", unsafe: bool = False, json_only: bool = False,
                   trusted_as_template: bool = False) -> Any:
        path = self._loader.path_dwim(file_name)
        before = file_identity(path)
        data = self._load(file_name, cache=cache, unsafe=unsafe, json_only=json_only,
                          trusted_as_template=trusted_as_template)
        if before is not None and os.path.isabs(str(file_name)) and before == file_identity(path) and _plain(path):
            try:
                self.kept[(str(path), bool(unsafe), bool(json_only), bool(trusted_as_template))] = (
                    before, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
            except Exception:  # noqa: BLE001 - a value that does not pickle: that file is parsed by each child
                pass
        return data


def _plain(path: str) -> bool:
    """A file without vault-encrypted data (read again: the loader gives no sign of an inline !vault value)."""
    try:
        with open(path, "rb") as handle:
            return VAULT_MARK not in handle.read()
    except OSError:
        return False


def write(kept: Kept, folder: str) -> Optional[str]:
    """The kept parses in <folder>/FILE_NAME (0600, created, never overwritten); its path, or None with nothing kept."""
    if not kept:
        return None
    path = os.path.join(folder, FILE_NAME)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        pickle.dump(kept, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def read(path: str) -> Optional[Kept]:
    """The kept parses at `path`, or None when it is not a regular file of this user closed to everyone else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        found = os.fstat(handle.fileno())
        if not stat.S_ISREG(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
            return None
        kept = pickle.load(handle)  # noqa: S301 - this user's own file, closed to others (checked above)
    return kept if isinstance(kept, dict) else None


def install(environ: Dict[str, str]) -> bool:
    """In a forked run: DataLoader.load_from_file answers from the kept parses the environment names, while each
    file is unchanged. False (nothing changed) when no usable file is named."""
    path = environ.get(ENV)
    kept = read(path) if path else None
    if not kept:
        return False
    from ansible.parsing.dataloader import DataLoader

    parse = DataLoader.load_from_file

    def load_from_file(self: Any, file_name: str, cache: str = "all", unsafe: bool = False, json_only: bool = False,
                       trusted_as_template: bool = False) -> Any:
        resolved = str(self.path_dwim(file_name))
        entry = kept.get((resolved, bool(unsafe), bool(json_only), bool(trusted_as_template)))
        if entry is not None and entry[0] == file_identity(resolved):
            return pickle.loads(entry[1])  # noqa: S301 - from read(): this user's own file; a new copy per call
        return parse(self, file_name, cache=cache, unsafe=unsafe, json_only=json_only,
                     trusted_as_template=trusted_as_template)

    DataLoader.load_from_file = load_from_file  # type: ignore[method-assign]
    return True
