"""Where things live: the collection, the state home (runs, private data, lab), the collection search path.

The package runs in one of two layouts (docs/design.md, "Packaging"):

- a checkout: galaxy.yml beside src/ (an editable install); the repository root is the
  collection, linked as .collections/ansible_collections/erlmcp/dr; state under .runs/ and .lab/.
- an installed wheel: the collection sits where ansible-core finds it with no configuration
  (site-packages/ansible_collections/erlmcp/dr, carrying MANIFEST.json, not galaxy.yml), or
  anywhere on Ansible's own collection search path; state under a per-user state directory.

Nothing here writes into an installed collection: the only thing ever made is the checkout's
.collections link, inside the checkout.
"""

from __future__ import annotations

import configparser
import functools
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from erlmcp_dr.errors import RunbookError

COLLECTION_ENV = "ERLMCP_DR_COLLECTION"
HOME_ENV = "ERLMCP_DR_HOME"
LAB_DIR_ENV = "ERLMCP_DR_LAB_DIR"
NAMESPACE, NAME = "erlmcp", "dr"
STATE_DIR_NAME = "erlmcp-dr"
LAB_INVENTORY_NAME = "inventory.yml"
MIN_FREE_ENV = "ERLMCP_DR_MIN_FREE_MB"
# What a run may write to the state folder: its run folder (a database_switchover on the three-node lab left
# 161 kB), its audit records and the 2 MiB end reserve (runner.SPACE_RESERVE_BYTES); a wide margin on top.
DEFAULT_MIN_FREE_MB = 16
# What marks a collection: galaxy.yml in a source tree, MANIFEST.json once built and installed.
MARKERS = ("galaxy.yml", "MANIFEST.json")


class CollectionNotFound(FileNotFoundError):
    """No erlmcp.dr collection where the package looked; the message names every place and the override."""


def is_collection(path: Path) -> bool:
    return any((path / marker).is_file() for marker in MARKERS)


def is_source_tree(path: Path) -> bool:
    """A collection as a source tree (galaxy.yml), which this package may add its .collections link to."""
    return (path / "galaxy.yml").is_file()


def checkout_root() -> Optional[Path]:
    """The checkout this package runs from (galaxy.yml beside src/erlmcp_dr), or None when installed."""
    root = Path(__file__).resolve().parents[2]
    if is_source_tree(root) and (root / "src" / "erlmcp_dr" / "paths.py").is_file():
        return root
    return None


# ---------------------------------------------------------------- the collection


def collection_root() -> Path:
    """The erlmcp.dr collection, looked for in this order:

    1. $ERLMCP_DR_COLLECTION (a source tree or an installed collection);
    2. the checkout this package runs from;
    3. <path>/ansible_collections/erlmcp/dr for each path of Ansible's own search path
       (ANSIBLE_COLLECTIONS_PATH, else the collections_path of the user's Ansible config; then
       sys.path, site-packages included), which is the copy ansible-playbook itself loads.
    """
    configured = os.environ.get(COLLECTION_ENV)
    if configured:
        root = Path(configured).expanduser().resolve()
        if not is_collection(root):
            raise CollectionNotFound(
                f"{COLLECTION_ENV}={configured} is not an erlmcp.dr collection: found no galaxy.yml or MANIFEST.json "
                f"in {root}; expected the collection's root (the folder holding plugins/ and playbooks/). "
                f"Point {COLLECTION_ENV} at it, or unset it to use the installed collection"
            )
        return root
    root = checkout_root()
    if root is not None:
        return root
    searched = ansible_collection_paths()
    for base in searched:
        candidate = base / "ansible_collections" / NAMESPACE / NAME
        if is_collection(candidate):
            return candidate.resolve()
    raise CollectionNotFound(
        f"no {NAMESPACE}.{NAME} collection found: looked for ansible_collections/{NAMESPACE}/{NAME} with a "
        f"MANIFEST.json or galaxy.yml under {', '.join(str(p) for p in searched) or 'nothing'} (Ansible's collection "
        f"search path); expected the one `pip install erlmcp-dr` puts in site-packages. Reinstall the package, "
        f"install the collection (`ansible-galaxy collection install erlmcp-dr-*.tar.gz`), or set {COLLECTION_ENV}"
    )


def ansible_collection_paths() -> List[Path]:
    """Ansible's collection search path as ansible-playbook would see it from here: COLLECTIONS_PATHS
    (ANSIBLE_COLLECTIONS_PATH, else the user's ANSIBLE_CONFIG / ./ansible.cfg / ~/.ansible.cfg /
    /etc/ansible/ansible.cfg, else Ansible's default), then sys.path when COLLECTIONS_SCAN_SYS_PATH is on."""
    configured, scan_sys_path = _ansible_settings()
    found = [Path(p).expanduser() for p in configured]
    if scan_sys_path:
        found += [Path(p) for p in sys.path if p]
    return _unique(found)


def _ansible_settings() -> Tuple[List[str], bool]:
    """COLLECTIONS_PATHS and COLLECTIONS_SCAN_SYS_PATH as ansible-core's config manager reads them from here
    (not ansible.constants, read once per process: this process may have changed its environment since)."""
    key = (tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("ANSIBLE_"))),
           os.environ.get("HOME", ""), os.getcwd())
    return _read_ansible_settings(key)


@functools.lru_cache(maxsize=8)
def _read_ansible_settings(key: Tuple[object, ...]) -> Tuple[List[str], bool]:
    """The two settings for one environment and working folder (`key`); a config file edited while this process
    runs is not read again. Read as ansible-core's config manager reads them (_plain_ansible_settings, about 1 ms)
    when nothing in them needs ansible-core itself; else by a ConfigManager (about 80-130 ms with its imports)."""
    plain = _plain_ansible_settings()
    return plain if plain is not None else _config_manager_settings()


def _config_manager_settings() -> Tuple[List[str], bool]:
    from ansible.config.manager import ConfigManager

    manager = ConfigManager()
    # Defaults may be templates over other settings, as ansible.constants renders them.
    variables = {"ANSIBLE_HOME": manager.get_config_value("ANSIBLE_HOME")}
    paths = manager.get_config_value("COLLECTIONS_PATHS", variables=variables) or []
    return [str(p) for p in paths], bool(manager.get_config_value("COLLECTIONS_SCAN_SYS_PATH"))


# ---------------------------------------------------------------- the two settings without ansible-core

# What ansible-core 2.19-2.21 (config/base.yml) says of the settings read here: environment variable, [defaults] key.
_HOME_SETTING = ("ANSIBLE_HOME", "home")
_PATHS_SETTING = ("ANSIBLE_COLLECTIONS_PATH", "collections_path")
_SCAN_SETTING = ("ANSIBLE_COLLECTIONS_SCAN_SYS_PATH", "collections_scan_sys_path")
_DEFAULT_HOME = "~/.ansible"
_DEFAULT_COLLECTION_DIRS = ("/collections", "/usr/share/ansible/collections")  # the first below ANSIBLE_HOME
_TRUE = frozenset({"y", "yes", "on", "1", "true", "t"})  # ansible-core's non-strict boolean


class _NeedsAnsible(Exception):
    """A value only ansible-core reads right (a template, quotes, a YAML config file, an unreadable file)."""


def _plain_ansible_settings() -> Optional[Tuple[List[str], bool]]:
    """COLLECTIONS_PATHS and COLLECTIONS_SCAN_SYS_PATH read the way ansible-core's ConfigManager reads them
    (environment, then [defaults] of the config file it would pick, then the default; paths resolved as its
    `pathspec` type does), or None when a value needs ansible-core: test_paths.py compares the two."""
    try:
        config_file = _ini_config_file()
        parser = _ini_parser(config_file) if config_file else None
        home = _setting(_HOME_SETTING, parser, config_file)
        home_dir = _resolve(*home) if home else _resolve(_DEFAULT_HOME, None)
        configured = _setting(_PATHS_SETTING, parser, config_file)
        if configured:
            paths = [_resolve(entry, configured[1]) for entry in configured[0].split(os.pathsep)]
        else:
            paths = [_resolve(home_dir + _DEFAULT_COLLECTION_DIRS[0], None), _DEFAULT_COLLECTION_DIRS[1]]
        scan = _setting(_SCAN_SETTING, parser, config_file)
        return paths, (scan[0].lower().strip() in _TRUE) if scan else True
    except _NeedsAnsible:
        return None


def _ini_config_file() -> Optional[str]:
    """The config file ansible-core's find_ini_config_file picks: $ANSIBLE_CONFIG (a folder: its ansible.cfg),
    ./ansible.cfg unless the working folder is world-writable, ~/.ansible.cfg, /etc/ansible/ansible.cfg."""
    candidates = []
    if "ANSIBLE_CONFIG" in os.environ:
        from_env = _resolve(os.environ["ANSIBLE_CONFIG"], None)
        candidates.append(os.path.join(from_env, "ansible.cfg") if os.path.isdir(from_env) else from_env)
    try:
        cwd = os.getcwd()
        if not os.stat(cwd).st_mode & 0o002:
            candidates.append(os.path.join(cwd, "ansible.cfg"))
    except OSError:
        pass
    candidates += [_resolve("~/.ansible.cfg", None), "/etc/ansible/ansible.cfg"]
    for candidate in candidates:
        if os.path.exists(candidate) and os.access(candidate, os.R_OK):
            if os.path.splitext(candidate)[1] not in (".cfg", ".ini"):
                raise _NeedsAnsible(candidate)
            return candidate
    return None


def _ini_parser(config_file: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",))
    try:
        with open(config_file, encoding="utf-8") as handle:
            parser.read_string(handle.read())
    except (OSError, UnicodeError, configparser.Error) as exc:
        raise _NeedsAnsible(config_file) from exc  # ansible-playbook will say what is wrong with it
    return parser


def _setting(names: Tuple[str, str], parser: Optional[configparser.ConfigParser],
             config_file: Optional[str]) -> Optional[Tuple[str, Optional[str]]]:
    """(value, the folder relative paths in it are read from: None for the working folder), None when unset."""
    env_name, key = names
    if env_name in os.environ:
        value, base = os.environ[env_name], None
    elif parser is not None and parser.get("defaults", key, raw=True, fallback=None) is not None:
        value, base = parser.get("defaults", key, raw=True), os.path.dirname(str(config_file))
    else:
        return None
    if not value or "{{" in value.replace("{{CWD}}", "") or value[0] in "'\"" or value[-1] in "'\"":
        raise _NeedsAnsible(env_name)  # templates, quotes, an empty value: ansible-core decides
    return value, base


def _resolve(path: str, base: Optional[str]) -> str:
    """ansible-core's resolve_path / unfrackpath(follow=False): {{CWD}}, $VARS and ~ expanded, made absolute
    from `base` (else the working folder), normalised; symlinks kept."""
    path = os.path.expanduser(os.path.expandvars(path.replace("{{CWD}}", os.getcwd())))
    if not os.path.isabs(path):
        path = os.path.join(base or os.getcwd(), path)
    return os.path.normpath(path)


def _unique(items: List[Path]) -> List[Path]:
    seen, result = set(), []
    for item in items:
        key = str(item)
        if key not in seen:
            seen.add(key)
            result.append(item)
    return result


def collections_path() -> Path:
    """The folder holding ansible_collections/erlmcp/dr for the collection in use.

    A source tree gets its .collections/ link (made on demand, inside the tree); an installed
    collection is already laid out so: its search-path entry is returned, nothing is written.
    """
    root = collection_root()
    if is_source_tree(root):
        return _source_tree_link(root)
    if root.parent.name != NAMESPACE or root.parent.parent.name != "ansible_collections" or root.name != NAME:
        raise CollectionNotFound(
            f"the installed collection at {root} is not laid out as <path>/ansible_collections/{NAMESPACE}/{NAME}, "
            f"so Ansible cannot load it from there; install it with ansible-galaxy or point {COLLECTION_ENV} at such "
            "a folder"
        )
    return root.parents[2]


def _source_tree_link(root: Path) -> Path:
    base = root / ".collections"
    link = base / "ansible_collections" / NAMESPACE / NAME
    if not (link / "galaxy.yml").is_file():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path("..") / ".." / "..", target_is_directory=True)
    return base


def ensure_collection_importable() -> None:
    """Lets controller code import the collection's module_utils as ansible_collections.erlmcp.dr."""
    path = str(collections_path())
    if path not in sys.path:
        sys.path.insert(0, path)


def ansible_env() -> Dict[str, str]:
    """What a playbook run needs in its environment to load this collection, keeping the user's settings:

    ANSIBLE_COLLECTIONS_PATH: the collection's search-path entry first, then the user's own search path
    (so their other collections still resolve); ANSIBLE_CONFIG: the user's, else the checkout's
    ansible.cfg, else left out (Ansible then looks in ./, ~/ and /etc/ansible as usual).
    """
    configured, _ = _ansible_settings()
    search = _unique([collections_path()] + [Path(p).expanduser() for p in configured])
    env = {"ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(str(p) for p in search)}
    if os.environ.get("ANSIBLE_CONFIG"):
        env["ANSIBLE_CONFIG"] = os.environ["ANSIBLE_CONFIG"]
    else:
        root = checkout_root()
        if root is not None and (root / "ansible.cfg").is_file():
            env["ANSIBLE_CONFIG"] = str(root / "ansible.cfg")
    return env


# ---------------------------------------------------------------- state


def state_home() -> Path:
    """Where runs, private run data and the lab are kept: $ERLMCP_DR_HOME, else the checkout's .runs/,
    else $XDG_STATE_HOME/erlmcp-dr, else ~/.local/state/erlmcp-dr."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    root = checkout_root()
    if root is not None:
        return root / ".runs"
    return user_state_dir()


class NotEnoughSpace(RunbookError):
    """The state folder has less free space than a run needs; the message names the folder, free and needed
    bytes, and the variables that move the folder or change what is needed."""


def needed_free_bytes() -> int:
    """$ERLMCP_DR_MIN_FREE_MB (MiB, a whole number >= 0), else DEFAULT_MIN_FREE_MB."""
    configured = os.environ.get(MIN_FREE_ENV, "").strip()
    if not configured:
        return DEFAULT_MIN_FREE_MB * 1024 * 1024
    if not configured.isdigit():
        raise NotEnoughSpace(f"{MIN_FREE_ENV}={configured[:40]!r}: expected a whole number of MiB (e.g. 16)")
    return int(configured) * 1024 * 1024


def check_free_space(folder: Optional[Path] = None) -> int:
    """Refuses (NotEnoughSpace) when the file system of `folder` (the state home by default; its nearest
    existing parent when it does not exist yet) has less free space than a run needs. Checked before a run
    starts: a run that fills the disk half-way has changed systems and cannot record it. Returns the free bytes."""
    folder = folder or state_home()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    needed = needed_free_bytes()
    if free < needed:
        raise NotEnoughSpace(
            f"not enough free space for a run in the state folder {folder}: {free} bytes free, {needed} needed "
            f"(its run folder, events, result.json, reports and audit records). Free space there, move the state "
            f"folder with {HOME_ENV}=<a folder with space>, or change what is needed with {MIN_FREE_ENV}=<MiB>. "
            "Nothing was run.")
    return free


def write_private_atomic(path: Path, text: str) -> None:
    """Writes `path` (0600 from its first byte) through a temp file and a rename: a reader, a crash or a full
    disk leaves the old file or the new one whole, never half of one (module_utils/_common/files.write_atomic)."""
    ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import write_atomic

    write_atomic(str(path), text, 0o600)


def write_private_files(files: Dict[Path, str]) -> Dict[Path, OSError]:
    """Writes several files as write_private_atomic writes each (0600 from the first byte, whole or not at all, the
    bytes and the name durable), with their fsyncs together: every file's bytes are written first, then each file is
    fsync'd (the first fsync's journal commit carries the others' bytes, so theirs return at once), renamed, and each
    folder fsync'd once. One at a time, a run's four end files took 8 fsyncs of 2.5-5 ms each on a busy machine (issue
    19). A file that cannot be written (a full disk) is returned with its error, its temp file removed, its old
    version left; the others are still written."""
    ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import fsync_folder

    failed: Dict[Path, OSError] = {}
    staged: List[Tuple[Path, str, int]] = []
    for path, text in files.items():
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        except OSError as exc:
            failed[path] = exc
            continue
        try:
            data = text.encode("utf-8")
            while data:
                data = data[os.write(fd, data):]
        except OSError as exc:  # its temp file goes at once: the space it took is the next file's
            failed[path] = exc
            os.close(fd)
            _remove_quietly(tmp)
            continue
        staged.append((path, tmp, fd))
    for path, tmp, fd in staged:
        try:
            os.fsync(fd)  # its bytes on disk before its name points at them
            os.rename(tmp, path)
        except OSError as exc:
            failed[path] = exc
            _remove_quietly(tmp)
        finally:
            os.close(fd)
    for folder in sorted({path.parent for path, _tmp, _fd in staged if path not in failed}):
        try:
            fsync_folder(str(folder))
        except OSError as exc:  # the renames may not survive a crash: say so for each file of that folder
            failed.update({path: exc for path, _tmp, _fd in staged if path.parent == folder})
    return failed


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_private_unsynced(path: Path, text: str) -> None:
    """write_private_atomic without its two fsyncs, for the files of a run's private data dir (its owner marker, the
    extra vars, ansible-runner's settings, the guard's script): 0600 from the first byte, and a reader sees no file or
    the whole one (a rename in the same folder), but nothing is forced to disk. That folder lives as long as its run:
    removed at the run's end, or, after a crash (the one case an fsync guards against), by the next run's sweep
    (runner.remove_stale_private_dirs) whatever it holds. Their 8 fsyncs cost 2-3 ms before a run's first task
    (issue 19: docs/speed-warm.md), more when the disk is busy."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def user_state_dir() -> Path:
    """The per-user state directory (XDG Base Directory: a relative $XDG_STATE_HOME is ignored)."""
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / STATE_DIR_NAME


def lab_root() -> Path:
    """The local lab's folder: $ERLMCP_DR_LAB_DIR, else the checkout's .lab/, else <state home>/lab."""
    configured = os.environ.get(LAB_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    root = checkout_root()
    if root is not None:
        return root / ".lab"
    return state_home() / "lab"


def lab_inventory(lab_dir: Optional[Path] = None) -> Path:
    """The inventory `runbook lab up` writes for a lab: <lab folder>/inventory.yml."""
    return (lab_dir or lab_root()) / LAB_INVENTORY_NAME


def default_inventory() -> Path:
    """What runbooks run against without -i: in a checkout the shipped inventories/lab while the lab is the
    default one it names, else the inventory `runbook lab up` wrote into the lab folder (lab/ports.py)."""
    root = checkout_root()
    if root is not None:
        from erlmcp_dr.lab import ports as lab_ports  # imports nothing of the lab's: this runs on every run

        return lab_ports.checkout_inventory(root, lab_root(), lab_inventory())
    return lab_inventory()


def file_identity(path: str | Path) -> Optional[Tuple[int, int, int, int, int]]:
    """What changes when a file is written or replaced: device, inode, size, modification and change times (ns);
    None when it cannot be read."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns


def read_json_object(path: Path) -> Dict[str, Any]:
    """A JSON object read from `path`; {} when the file is missing, unreadable, torn or not an object (a run folder
    is read as it is: a killed run leaves files half-written)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
