"""Runs a runbook through ansible-runner and leaves a run folder behind.

Shaped like ansible-runner's interface.py: `run()` is a thin facade that builds a
`RunConfig` (everything decided and checked before anything starts) and hands it to a
`RunbookRun`, which drives ansible-runner, turns its events into a timeline and writes
the run folder (0700; every file in it 0600):

    <state_home>/runs/<run_id>/
        run.json               the marker: status (running until the run ends), pid and its start time
        result.json            RunResult.to_dict()
        report.md              the human report
        report.html            the same as one self-contained page with a timeline chart (html_report.py)
        artifacts/<run_id>/    ansible-runner's artifacts (job_events, stdout, rc, status, command
                               with the argv and the NAMES of the environment variables only)

Every run appends its start, each step that changed something and its end to the audit trail
(audit.py: <state_home>/audit/audit.jsonl, hash-chained).

The run lock is the playbook's own (erlmcp.dr.run_lock): a run it turns away raises RunBusy.

Parameters are data: the extra vars file is written here, as YAML in which every string
(keys included) is tagged !unsafe, so Ansible never evaluates a value as a template.
It lives in ansible-runner's private_data_dir, <state_home>/private/<run_id> (0700), removed
when the run ends, and by the next run's start when its run was killed.

ansible-playbook runs under a guard (`guard_source()`): when the `runbook` process dies, even by
SIGKILL, the kernel tells the guard (PR_SET_PDEATHSIG), which kills the run's processes:
ansible-playbook, its workers and the modules they run (not a daemon the run started).
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import yaml

from erlmcp_dr import audit, catalog, params, paths, report
from erlmcp_dr.catalog import Runbook
from erlmcp_dr.errors import ParameterError, RunBusy
from erlmcp_dr.redaction import MIN_SCRUB_LENGTH, scrub_text
from erlmcp_dr.result import HTML_REPORT_FILE, REPORT_FILE, RESULT_FILE, RunResult, Step

log = logging.getLogger(__name__)

StepCallback = Callable[[Step], None]
StartCallback = Callable[[str, str, str], None]  # (task, host, action): a task has started on a host
# A step that changed something; its before/after (the module's diff) and the strings of its arguments.
AuditCallback = Callable[[Step, Dict[str, Any], List[str]], None]

STEP_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}
# Keys of a module result that are bookkeeping, not the facts a step reports.
_DROPPED_RESULT_KEYS = frozenset({"invocation", "changed", "failed", "msg", "diff"})
_COLLECTION_PREFIX = "erlmcp.dr."
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Extra vars every run passes to its playbook besides the runbook's parameters.
RUN_ID_VAR = "erlmcp_dr_run_id"
RUN_DIR_VAR = "erlmcp_dr_run_dir"
OPERATOR_VAR = "erlmcp_dr_operator"  # only when --operator / operator= is given (e.g. for the run lock's holder)
MARKER_FILE = "run.json"  # in the run folder: status (running until it ends), pid, pid start time
OWNER_FILE = "owner.json"  # in the private data dir: the pid (and start time) of the run owning it
# Space held for the run's end while it runs (in the private data dir, removed with it just before the end is
# written): when the disk fills during a run, its audit end record, result.json and reports still fit.
SPACE_RESERVE_FILE = "space.reserve"
SPACE_RESERVE_BYTES = 2 * 1024 * 1024


# ---------------------------------------------------------------- configuration


@dataclass
class RunConfig:
    """Everything a run needs, decided and validated before anything starts."""

    runbook: Runbook
    inventory: Path
    extravars: Dict[str, Any]
    run_id: str
    run_dir: Path
    check: bool = False
    diff: bool = True
    limit: Optional[str] = None
    verbosity: int = 0
    timeout: Optional[int] = None
    secrets: List[str] = field(default_factory=list)
    operator: Optional[str] = None  # who runs it, for the audit trail (`--operator`); the OS user is recorded too

    @classmethod
    def prepare(
        cls,
        name: str | Runbook,
        inventory: Optional[os.PathLike | str] = None,
        extravars: Optional[Mapping[str, Any]] = None,
        check: bool = False,
        diff: bool = True,
        run_id: Optional[str] = None,
        limit: Optional[str] = None,
        verbosity: int = 0,
        timeout: Optional[int] = None,
        playbooks_dir: Optional[os.PathLike | str] = None,
        operator: Optional[str] = None,
    ) -> RunConfig:
        # A Runbook the caller already loaded (the CLI does, to parse -e) is not read and parsed again.
        runbook = name if isinstance(name, Runbook) else catalog.load(name, playbooks_dir)
        values = params.validate(runbook, extravars)
        run_id = run_id or new_run_id(runbook.name)
        if not _RUN_ID.match(run_id):
            raise ParameterError("run_id", f"run id {run_id!r} must be letters, digits, '.', '_' or '-'")
        run_dir = paths.state_home() / "runs" / run_id
        if run_dir.exists():
            raise ParameterError("run_id", f"run {run_id} already exists at {run_dir}; choose another run id")
        inventory_path = resolve_inventory(inventory)
        if limit:
            check_limit(runbook, inventory_path, limit)
        paths.check_free_space(run_dir.parent)
        return cls(
            runbook=runbook,
            inventory=inventory_path,
            extravars=values,
            run_id=run_id,
            run_dir=run_dir,
            check=check,
            diff=diff,
            limit=limit,
            verbosity=int(verbosity or 0),
            timeout=timeout,
            secrets=params.secret_values(runbook, values),
            operator=(operator or "").strip() or None,
        )

    @property
    def artifact_dir(self) -> Path:
        """What ansible-runner is given; it writes into artifact_dir/<run_id>/."""
        return self.run_dir / "artifacts"

    @property
    def cmdline(self) -> str:
        flags = []
        if self.check:
            flags.append("--check")
        if self.diff:
            flags.append("--diff")
        return " ".join(flags)

    def envvars(self) -> Dict[str, str]:
        env = paths.ansible_env()
        env[audit.WRITER_ENV] = "runner"  # this process records the run: the audit_trail callback stays quiet
        # ansible-playbook sits next to this interpreter in a virtualenv that may not be on PATH.
        bindir = Path(sys.executable).parent
        if (bindir / "ansible-playbook").exists():
            env["PATH"] = os.pathsep.join([str(bindir), os.environ.get("PATH", os.defpath)])
        return env

    def playbook_extravars(self) -> Dict[str, Any]:
        """What the playbook gets as extra vars: the parameters, the run's own id and folder, and its operator."""
        extravars = dict(self.extravars)
        extravars[RUN_ID_VAR] = self.run_id
        extravars[RUN_DIR_VAR] = str(self.run_dir)
        if self.operator:
            extravars[OPERATOR_VAR] = self.operator
        return extravars

    def runner_config_kwargs(self, private_data_dir: Path) -> Dict[str, Any]:
        """RunnerConfig's arguments. No `extravars`: they are in <private_data_dir>/env/extravars (see
        write_extravars), which ansible-runner passes as `-e @file`; given here, they would also be
        put on the command line as JSON, where Ansible templates them."""
        kwargs: Dict[str, Any] = {
            "private_data_dir": str(private_data_dir),
            "playbook": str(self.runbook.path),
            "project_dir": str(self.runbook.path.parent),
            "inventory": str(self.inventory),
            "envvars": self.envvars(),
            "artifact_dir": str(self.artifact_dir),
            "ident": self.run_id,
            "quiet": True,
            "suppress_env_files": True,
        }
        if self.cmdline:
            kwargs["cmdline"] = self.cmdline
        if self.limit:
            kwargs["limit"] = self.limit
        if self.verbosity:
            kwargs["verbosity"] = self.verbosity
        return kwargs  # the timeout is the Stopper's: ansible-runner's own would orphan the workers


def new_run_id(name: str, now: Optional[dt.datetime] = None) -> str:
    """`20261123T150102Z-database_failover-3fa2`: sortable by time, readable, unique."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{name}-{secrets.token_hex(2)}"


def resolve_inventory(inventory: Optional[os.PathLike | str]) -> Path:
    path = Path(inventory).expanduser() if inventory else paths.default_inventory()
    path = path.resolve()
    if not path.exists():
        hint = " (the local lab's inventory: `runbook lab up` creates the lab)" if not inventory else ""
        raise ParameterError("inventory", f"inventory {path} does not exist{hint}")
    return path


# ---------------------------------------------------------------- --limit


def check_limit(runbook: Runbook, inventory: Path, limit: str) -> None:
    """Refuses a --limit that leaves out the hosts of the runbook's first play (the controller play:
    it validates the parameters, takes the run lock and drives every step), so nothing would run."""
    if not runbook.targets:
        return
    target = runbook.targets[0]
    selected = _limited_hosts(inventory, target, limit)
    if selected is None or selected:
        return
    raise ParameterError("limit", (
        f"--limit {limit!r} leaves out {target!r}, where the first play of runbook '{runbook.name}' runs (it "
        "validates the parameters, takes the run lock and drives every step): nothing would run. "
        f"Add {target} to the limit (e.g. --limit '{target},{limit}') or run without --limit"))


def _limited_hosts(inventory: Path, pattern: str, limit: str) -> Optional[List[str]]:
    """The hosts `pattern` selects in `inventory` once `limit` applies (as ansible-playbook --limit),
    or None when the inventory cannot be read here (ansible-playbook will say why)."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.display import Display

    display = Display()
    verbosity = display.verbosity
    try:
        manager = InventoryManager(loader=DataLoader(), sources=[str(inventory)])
        manager.subset(limit)
        return [host.name for host in manager.get_hosts(pattern)]
    except Exception:  # an unreadable inventory is ansible-playbook's to report, with its file and line
        log.debug("could not read %s to check --limit %r", inventory, limit, exc_info=True)
        return None
    finally:
        display.verbosity = verbosity


# The host names of a YAML inventory, read without ansible-core: Ansible's InventoryManager costs about 0.2 s of
# CPU (imports and plugins) inside the run, at its first change, beside ansible-playbook.
_YAML_SUFFIXES = (".yml", ".yaml")
_VARS_DIRS = ("group_vars", "host_vars")


def yaml_inventory_hosts(inventory: Path) -> Optional[set]:
    """The host names of a plain YAML inventory (a .yml/.yaml file, or a folder holding only such files beside
    group_vars/ and host_vars/), or None for anything only Ansible reads right: INI, a script, an inventory
    plugin's configuration, a host range (`web[1:3]`) or a host with its port, a file that does not parse."""
    files = _yaml_inventory_files(inventory)
    if files is None:
        return None
    hosts: set = set()
    for path in files:
        try:
            data = catalog.read_plain_yaml(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, RecursionError, yaml.YAMLError):
            return None
        if data is None:
            continue
        if not isinstance(data, dict) or "plugin" in data:
            return None
        if not all(_group_hosts(group, hosts) for group in data.values()):
            return None
    return hosts


def _yaml_inventory_files(inventory: Path) -> Optional[List[Path]]:
    if inventory.is_file():
        return [inventory] if inventory.suffix in _YAML_SUFFIXES else None
    if not inventory.is_dir():
        return None
    files = []
    for entry in sorted(inventory.iterdir()):
        if entry.name in _VARS_DIRS and entry.is_dir():
            continue
        if not entry.is_file() or entry.suffix not in _YAML_SUFFIXES or entry.name.startswith("."):
            return None
        files.append(entry)
    return files


def _group_hosts(group: Any, hosts: set) -> bool:
    """Adds a YAML inventory group's hosts (its children's too) to `hosts`; False where Ansible must decide."""
    if group is None:
        return True
    if not isinstance(group, dict):
        return False
    members, children = group.get("hosts") or {}, group.get("children") or {}
    if not isinstance(members, dict) or not isinstance(children, dict):
        return False
    for name in members:
        if not isinstance(name, str) or not name or any(mark in name for mark in "[]:"):
            return False
        hosts.add(name)
    return all(_group_hosts(child, hosts) for child in children.values())


# ---------------------------------------------------------------- a run the playbook's lock turned away

# The steps that take the run lock: erlmcp.dr.run_lock, and erlmcp.dr.pg_begin, which runs it inside the database
# runbooks' one-task start. Either one failing with `busy: true` means another run holds the lock.
RUN_LOCK_ACTIONS = ("erlmcp.dr.run_lock", "erlmcp.dr.pg_begin")


def busy_holder(steps: List[Step]) -> Optional[Dict[str, Any]]:
    """The holder named by a failed lock-taking step (RUN_LOCK_ACTIONS) with `busy: true`, else None."""
    for step in steps:
        if step.failed and not step.ignored and step.action in RUN_LOCK_ACTIONS and step.data.get("busy"):
            holder = step.data.get("holder")
            return holder if isinstance(holder, dict) else {}
    return None


def run_busy(config: RunConfig, holder: Mapping[str, Any], result: Optional[RunResult] = None) -> RunBusy:
    pid = holder.get("pid")
    return RunBusy(
        str(config.inventory), run_id=str(holder.get("run_id") or ""), pid=pid if isinstance(pid, int) else None,
        since=str(holder.get("started_at") or ""), host=str(holder.get("host") or holder.get("hostname") or ""),
        runbook=str(holder.get("runbook") or ""), result=result,
    )


# ---------------------------------------------------------------- the private data dir and the extra vars


class _UnsafeDumper(yaml.SafeDumper):
    """YAML where every string, mapping keys included, reaches the playbook as the string it was and is never
    templated: `!unsafe` for every string that reads as a string, a plain quoted string for the others."""


_PLAIN_STR = "tag:yaml.org,2002:str"
_TEMPLATE_MARKERS = ("{{", "{%", "{#")


def _unsafe_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """Ansible (2.19) resolves an `!unsafe` scalar's type from its text as if it were unquoted: `!unsafe "*"`
    fails to load (an alias marker), `!unsafe "2026-13-45T99:00:00Z"` too (a timestamp with month 13), and
    `!unsafe "0123"` or `!unsafe "true"` would arrive as an int or a bool. Those strings (ints, floats, booleans,
    nulls, timestamps, `=`, `<<`, `*`, `!`, `&`) hold no template marker, so they are written as plain quoted
    strings, which Ansible reads as strings and has nothing to template in; every other string stays `!unsafe`."""
    resolved = dumper.resolve(yaml.ScalarNode, value, (True, False))
    if resolved != _PLAIN_STR and not any(marker in value for marker in _TEMPLATE_MARKERS):
        return dumper.represent_scalar(_PLAIN_STR, value, style='"')
    return dumper.represent_scalar("!unsafe", value, style='"')


_UnsafeDumper.add_representer(str, _unsafe_str)


def unsafe_yaml(values: Mapping[str, Any]) -> str:
    return yaml.dump(dict(values), Dumper=_UnsafeDumper, default_flow_style=False, allow_unicode=True,
                     sort_keys=False, width=1 << 30)


def write_extravars(private_data_dir: Path, values: Mapping[str, Any]) -> Path:
    """<private_data_dir>/env/extravars (0600): every string tagged !unsafe."""
    env_dir = private_data_dir / "env"
    env_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = env_dir / "extravars"
    _write_private(path, unsafe_yaml(values))
    return path


def write_settings(private_data_dir: Path) -> None:
    """ansible-runner settings: poll the child (and a cancel by SIGTERM/SIGINT) every second."""
    _write_private(private_data_dir / "env" / "settings", json.dumps({"pexpect_timeout": 1}))


def private_root() -> Path:
    return paths.state_home() / "private"


def make_private_data_dir(run_id: str) -> Path:
    """<state_home>/private/<run_id> (0700), holding an owner marker naming this process from the moment it
    exists under that name (made as .new-<run_id>, then renamed), so a concurrent sweep never takes it for
    a killed run's."""
    root = private_root()
    _mkdir_private(root)
    staging = root / f".new-{run_id}"
    staging.mkdir(mode=0o700)
    _write_private(staging / OWNER_FILE, json.dumps(_process_marker()))
    path = root / run_id
    staging.rename(path)
    return path


def remove_stale_private_dirs() -> List[Path]:
    """Removes the private data dirs whose owning process is gone (a killed run), and makes what that run
    left in its run folder 0600 (a normal end does that); returns the dirs removed."""
    removed = []
    root = private_root()
    if not root.is_dir():
        return removed
    for path in sorted(root.iterdir()):
        if not path.is_dir() or path.is_symlink():
            continue
        owner = _read_json(path / OWNER_FILE)
        if not owner and path.name.startswith(".new-"):
            continue  # being made right now (it holds nothing yet)
        if not process_alive(owner):
            # A run killed whole (its guard too) can leave orphans outside any tree: its marker finds them.
            kill_tree(NO_ROOT, include_root=False, marker=os.path.abspath(path))
            if _RUN_ID.match(path.name) and run_dir_of(path.name).is_dir():
                _close_killed_run(run_dir_of(path.name), path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _close_killed_run(run_dir: Path, private_data_dir: Path) -> None:
    """What a normal end does to its run folder, for a killed run: its secrets (the no_log parameters, read
    from its extra vars before they go) scrubbed from what it wrote, and every file 0600."""
    try:
        marker = _read_json(run_dir / MARKER_FILE)
        runbook = catalog.parse_playbook(Path(str(marker.get("playbook") or "")))
        values = params.load_extravars_file(private_data_dir / "env" / "extravars")
        if runbook is not None:
            leaked = scrub_dir(run_dir, params.secret_values(runbook, values))
            if leaked:
                log.warning("killed run %s: the value of a no_log parameter was in %d file(s) of its run folder; "
                            "replaced with %s", run_dir.name, len(leaked), params.REDACTED)
    except Exception:  # a best effort: the run folder stays 0700 whatever happens here
        log.debug("could not scrub the folder of killed run %s", run_dir.name, exc_info=True)
    make_private(run_dir)


def process_alive(marker: Mapping[str, Any]) -> bool:
    """Is the process a marker names (pid + its start time, against PID reuse) still running?"""
    pid = marker.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    started = process_start_time(pid)
    if started is None:
        return False
    return marker.get("pid_start_time") in (None, started)


def process_start_time(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] == "Z":  # a zombie has finished
        return None
    return int(fields[19])


def _process_marker() -> Dict[str, Any]:
    return {"pid": os.getpid(), "pid_start_time": process_start_time(os.getpid()), "host": os.uname().nodename}


# ---------------------------------------------------------------- the guard: the child dies with `runbook`

# ansible-playbook's workers call setsid(), so a process group does not hold a run: its process TREE does.
# Daemons a run starts (a postmaster from pg_ctl start, a daemonized redis-server) also call setsid() and must
# outlive it: only the sessions of the guard and of ansible-playbook processes (the workers) are the run's.
#
# The guard is NOT a subreaper (issue 16 row 3): a subreaper adopts every daemon the run starts, so the server
# sits in the run's process tree and dies with any kill of that tree (an operator's, a supervisor's, a test's).
# Without it a daemon is re-parented to init (or to whatever subreaper is above `runbook`) and leaves the tree.
# The run's own orphans (a module's background child left when ansible-playbook ended, the workers of a killed
# ansible-playbook) are found instead by the run marker the guard puts in its child's environment (RUN_MARKER,
# inherited by every process of the run): a marked process outside the tree is the run's unless it is in a
# session whose leader still lives outside the run's sessions (a daemon and its children). docs/design.md,
# "The run guard and the daemons a run starts".
RUN_MARKER = "ERLMCP_DR_RUN"
NO_ROOT = -1  # kill_tree's root when only the marker finds the run (never a pid: no tree, no PID reuse)


def proc_stat(pid: int) -> tuple:
    """(parent pid, session id) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def process_tree(root: int) -> dict:
    """{pid: session id} of `root` and its descendants (through the parent pids in /proc), zombies included."""
    children: dict = {}
    sessions: dict = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            found = proc_stat(int(name))
            if found is not None:
                children.setdefault(found[0], []).append(int(name))
                sessions[int(name)] = found[1]
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in sessions:
            tree[pid] = sessions[pid]
        todo.extend(children.get(pid, []))
    return tree


def marked_processes(marker: str) -> list:
    """The pids whose environment (as they started) holds RUN_MARKER=marker: the run's processes wherever the
    kernel re-parented them. Processes of other users are not readable, hence never the run's."""
    needle = f"{RUN_MARKER}={marker}".encode() + b"\0"
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as handle:
                    if needle in handle.read() + b"\0":
                        found.append(int(name))
            except OSError:
                continue
    return found


def run_processes(root: int, marker: str = "") -> list:
    """The processes of the run under `root` (the guard): those in its session or in a session an
    ansible-playbook process (a worker) leads; and, given the run's marker, its orphans outside the tree (not
    the daemons the run started: a daemon leads its own session, or lives in one whose leader lives)."""
    tree = process_tree(root)
    sessions = {tree.get(root)}
    orphans = {}
    for pid in marked_processes(marker) if marker else []:
        found = proc_stat(pid)
        if found is not None and pid not in tree:
            orphans[pid] = found[1]
    for pid, session in [*tree.items(), *orphans.items()]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if b"ansible-playbook" in handle.read():
                    sessions.add(session)
        except OSError:
            continue
    mine = [pid for pid, session in tree.items() if session in sessions]
    return mine + [pid for pid, session in orphans.items()
                   if session in sessions or proc_stat(session) is None]


def freeze_and_kill(find: Callable[[], set]) -> list:
    """SIGSTOPs what find() returns (again until it returns nothing new: a stopped process cannot fork), then
    SIGKILLs them all. Returns the pids signalled."""
    stopped: set = set()
    while True:
        new = find() - stopped
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
        stopped |= new
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return sorted(stopped)


def kill_tree(root: int, include_root: bool = True, marker: str = "") -> list:
    """Freezes then kills the run's processes under `root` (and its marked orphans, given the run's marker)."""
    me = os.getpid()

    def find() -> set:
        found = set(run_processes(root, marker)) - {me}
        if not include_root:
            found.discard(root)
        return found

    return freeze_and_kill(find)


# The guard's child runs ansible-playbook in the guard's own interpreter when that is the interpreter its script
# names (a virtualenv's console script): no second interpreter start, and no teardown of ansible-core's modules
# and heap at its exit (about 0.1 s of CPU after the last task: run_script ends with os._exit once the output is
# flushed and the atexit handlers ran). Any other command is exec'd as before.


def in_process_script(command: str) -> str | None:
    """The path of `command` (found as execvp finds it) when it is a Python script whose #! line names exactly this
    interpreter (sys.executable), else None."""
    candidates = [command] if os.sep in command else [
        os.path.join(folder or ".", command) for folder in os.environ.get("PATH", os.defpath).split(os.pathsep)]
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            try:
                with open(path, "rb") as handle:
                    first = handle.readline(4096).strip()
            except OSError:
                return None
            if first == b"#!" + os.fsencode(sys.executable):
                return path
            return None
    return None


def run_script(path: str, argv: list) -> None:
    """Runs the script at `path` as __main__ with argv (argv[0] becomes its path, as when the kernel starts it) and
    ends the process with its exit code: non-daemon threads joined, output flushed, atexit handlers run, then
    os._exit, skipping the interpreter's teardown."""
    import atexit
    import runpy
    import threading
    import traceback

    sys.argv = [path, *argv[1:]]
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    code = 0
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # as Python's own top level: the traceback on stderr, exit 1
        traceback.print_exc()
        code = 1
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120
    atexit._run_exitfuncs()
    os._exit(code & 0xFF)


# The guard: run as `python <private_data_dir>/guard.py <parent pid> <argv...>` in place of ansible-playbook.
# It asks the kernel for SIGTERM when its parent (the runbook process) dies, even by SIGKILL
# (PR_SET_PDEATHSIG), marks its child's environment (RUN_MARKER: how it finds the run's orphans, as it is no
# subreaper), runs the command, and on that signal (or SIGTERM/SIGINT from anyone) kills the run's processes:
# ansible-playbook, its workers and the modules they run (not the daemons the run started).
_GUARD_MAIN = """
_marker = os.path.dirname(os.path.abspath(sys.argv[0]))  # the run's private data dir: one run's own


def _stop(signum, frame):
    kill_tree(os.getpid(), include_root=False, marker=_marker)
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _stop)
signal.signal(signal.SIGINT, _stop)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)  # the parent died before the request: nothing started
_pid = os.fork()
if _pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.environ[RUN_MARKER] = _marker
    try:
        _script = in_process_script(sys.argv[2])
        if _script is None:
            os.execvp(sys.argv[2], sys.argv[2:])
        run_script(_script, sys.argv[2:])
    finally:
        os._exit(127)
_done, _status = os.waitpid(_pid, 0)
kill_tree(os.getpid(), include_root=False, marker=_marker)  # nothing of the run outlives ansible-playbook
sys.exit(os.waitstatus_to_exitcode(_status) if os.WIFEXITED(_status) else 128 + os.WTERMSIG(_status))
"""


def guard_source() -> str:
    import inspect

    functions = [proc_stat, process_tree, marked_processes, run_processes, freeze_and_kill, kill_tree,
                 in_process_script, run_script]
    return "\n".join(["import ctypes, os, signal, sys", "from typing import Callable", f"RUN_MARKER = {RUN_MARKER!r}",
                      *map(inspect.getsource, functions), _GUARD_MAIN])


def guarded(command: List[str], private_data_dir: Path) -> List[str]:
    """`command` run under the guard, written as <private_data_dir>/guard.py (0600)."""
    script = private_data_dir / "guard.py"
    _write_private(script, guard_source())
    return [sys.executable, str(script), str(os.getpid()), *command]


def guard_pids(private_data_dir: Path) -> List[int]:
    """This process's children running a run's guard (their command line names its private data dir)."""
    me, needle = os.getpid(), str(private_data_dir).encode()
    found = []
    for pid in process_tree(me):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if pid != me and (proc_stat(pid) or (0,))[0] == me and needle in cmdline:
            found.append(pid)
    return found


class Stopper:
    """ansible-runner's cancel_callback. On SIGTERM/SIGINT (when run from the main thread) or past the run's
    timeout, it kills the guard's whole process tree itself: ansible-runner's own SIGKILL of the guard's
    process group would miss the workers, which run in sessions of their own."""

    def __init__(self, private_data_dir: Path, timeout: Optional[int]) -> None:
        from ansible_runner.utils import signal_handler

        self.private_data_dir = private_data_dir
        self.signalled = signal_handler()  # None outside the main thread
        self.deadline = time.monotonic() + timeout if timeout else None
        self.timed_out = False

    def __call__(self) -> bool:
        self.timed_out = self.deadline is not None and time.monotonic() > self.deadline
        if not (self.timed_out or (self.signalled is not None and self.signalled())):
            return False
        for pid in guard_pids(self.private_data_dir):
            kill_tree(pid, marker=os.path.abspath(self.private_data_dir))
        return True


# ---------------------------------------------------------------- closing the finished child


@functools.lru_cache(maxsize=1)
def closing_spawn() -> type:
    """pexpect.spawn whose close() of a child that has already exited skips ptyprocess's `delayafterclose`.

    ptyprocess sleeps 0.1 s after closing the pty "to give the kernel time to update process status", then
    checks that status. ansible-runner closes its child only after its loop saw it exit (or after killing it),
    so that sleep is 0.1 s at the end of every run for nothing. A child still alive is closed as before
    (sleep, then terminated)."""
    import pexpect

    class ClosingSpawn(pexpect.spawn):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _SPAWNED.child = self  # this thread's run: finish_abandoned_child() finds it

        def close(self, force: bool = True) -> None:
            if not self.ptyproc.closed and not self.isalive():
                self.ptyproc.delayafterclose = 0
            super().close(force=force)

    return ClosingSpawn


_SPAWNED = threading.local()


def finish_abandoned_child() -> Optional[int]:
    """When ansible-runner stopped reading its ansible-playbook (its output could not be written: a full disk),
    the playbook is not cut off mid-change: its output is read and dropped until it exits. Returns its exit
    status (None when there was no child left running)."""
    child = getattr(_SPAWNED, "child", None)
    _SPAWNED.child = None
    if child is None or child.ptyproc.closed:
        return None
    import pexpect

    child.logfile_read = None
    try:
        child.expect(pexpect.EOF, timeout=None)
    except pexpect.ExceptionPexpect:
        log.debug("reading the abandoned ansible-playbook to its end failed", exc_info=True)
    child.close()
    return child.exitstatus


def close_exited_children_at_once() -> None:
    """Gives ansible-runner's Runner (its module's `pexpect`, nobody else's) closing_spawn() as pexpect.spawn."""
    import ansible_runner.runner as runner_module

    current = runner_module.pexpect
    if getattr(current, "spawn", None) is closing_spawn():
        return
    proxy = types.ModuleType(current.__name__, current.__doc__)
    proxy.__dict__.update({key: value for key, value in vars(current).items() if not key.startswith("__")})
    proxy.spawn = closing_spawn()
    runner_module.pexpect = proxy


# ---------------------------------------------------------------- the timeline


class Timeline:
    """ansible-runner event handler: steps from runner_on_* events, facts from set_stats."""

    def __init__(self, secrets: List[str], on_step: Optional[StepCallback] = None,
                 on_start: Optional[StartCallback] = None, on_change: Optional[AuditCallback] = None) -> None:
        self.secrets = [value for value in secrets if len(value) >= MIN_SCRUB_LENGTH]
        self.on_step = on_step
        self.on_start = on_start
        self.on_change = on_change
        self.steps: List[Step] = []
        self.facts: Dict[str, Any] = {}
        self.stats: Dict[str, Any] = {}
        self.leaks = 0

    def __call__(self, event: Dict[str, Any]) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind in STEP_EVENTS:
            step = self._scrubbed(make_step(STEP_EVENTS[kind], data))
            self.steps.append(step)
            if step.changed and self.on_change is not None:
                res = data.get("res") if isinstance(data.get("res"), dict) else {}
                self._call(self.on_change, step, self._scrubbed(before_after(step.action, res)),
                           self._scrubbed(named_in(res)))
            self._notify(step)
        elif kind == "runner_on_start" and self.on_start is not None:
            task = str(data.get("task") or data.get("task_action") or "")
            action = str(data.get("resolved_action") or data.get("task_action") or "")
            self._call(self.on_start, task, str(data.get("host") or ""), action)
        elif kind == "playbook_on_stats":
            self.facts = self._scrubbed(data.get("artifact_data") or {})
            self.stats = {key: data.get(key) or {} for key in
                          ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")}
        return True  # keep the event: ansible-runner writes it to job_events/

    def _notify(self, step: Step) -> None:
        if self.on_step is not None:
            self._call(self.on_step, step)

    @staticmethod
    def _call(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:  # a broken progress display or audit write must not stop a failover
            log.exception("run callback %r failed", getattr(callback, "__name__", callback))

    def _scrubbed(self, value: Any) -> Any:
        if not self.secrets:
            return value
        is_step = isinstance(value, Step)
        text = json.dumps(value.to_dict() if is_step else value, default=str)
        clean = scrub_text(text, self.secrets)
        if clean == text:
            return value
        self.leaks += 1
        loaded = json.loads(clean)
        return Step.from_dict(loaded) if is_step else loaded


def make_step(outcome: str, data: Dict[str, Any]) -> Step:
    res = data.get("res") if isinstance(data.get("res"), dict) else {}
    action = str(data.get("resolved_action") or data.get("task_action") or "")
    failed = outcome == "failed"
    return Step(
        task=str(data.get("task") or action or "(unnamed task)"),
        host=str(data.get("host") or ""),
        action=action,
        start=_text_or_none(data.get("start")),
        end=_text_or_none(data.get("end")),
        duration=float(data["duration"]) if data.get("duration") is not None else None,
        changed=bool(res.get("changed")) and outcome == "ok",
        failed=failed,
        skipped=outcome == "skipped",
        unreachable=outcome == "unreachable",
        message=step_message(res, failed),
        data=step_data(action, res),
        ignored=failed and bool(data.get("ignore_errors")),
        role=str(data.get("role") or ""),
    )


def named_in(res: Mapping[str, Any]) -> List[str]:
    """What a task result names directly: its top-level string values, its module's top-level string arguments
    and its loop items (not nested lists: a member list names every node, not the one acted on)."""
    invocation = res.get("invocation") if isinstance(res.get("invocation"), dict) else {}
    arguments = invocation.get("module_args") if isinstance(invocation.get("module_args"), dict) else {}
    items = [item.get("item") for item in res.get("results") or [] if isinstance(item, dict)
             and (item.get("changed") or item.get("failed"))]
    values = [*res.values(), *arguments.values(), *items]
    return [value for value in values if isinstance(value, str) and len(value) < 256]


def before_after(action: str, res: Any) -> Dict[str, Any]:
    """An erlmcp.dr module's diff as {'before': ..., 'after': ...} (a list of them for a loop), else {}."""
    if not action.startswith(_COLLECTION_PREFIX) or not isinstance(res, dict):
        return {}
    diffs = res.get("diff")
    if isinstance(diffs, dict):
        diffs = [diffs]
    if not isinstance(diffs, list):
        return {}
    pairs = [{"before": item.get("before"), "after": item.get("after")} for item in diffs
             if isinstance(item, dict) and ("before" in item or "after" in item)]
    if not pairs:
        return {}
    if len(pairs) == 1:
        return pairs[0]
    return {"before": [pair["before"] for pair in pairs], "after": [pair["after"] for pair in pairs]}


def step_message(res: Mapping[str, Any], failed: bool) -> str:
    message = _as_text(res.get("msg"))
    if failed:
        item_messages = [_as_text(item.get("msg")) for item in res.get("results") or []
                         if isinstance(item, dict) and item.get("failed") and item.get("msg")]
        details = item_messages or [_tail(_as_text(res.get("stderr")), 10)]
        extra = "; ".join(detail for detail in details if detail and detail not in message)
        message = f"{message}: {extra}" if message and extra else (message or extra)
    return message


def step_data(action: str, res: Mapping[str, Any]) -> Dict[str, Any]:
    """The machine-readable facts an erlmcp.dr module returned (LSNs, lag, key counts, ...)."""
    if not action.startswith(_COLLECTION_PREFIX):
        return {}
    return {key: value for key, value in res.items()
            if key not in _DROPPED_RESULT_KEYS and not key.startswith("_ansible")}


# ---------------------------------------------------------------- the run


class RunbookRun:
    """Executes one RunConfig: run folder, ansible-runner under the guard, timeline, result, scrub."""

    def __init__(self, config: RunConfig, event_callback: Optional[StepCallback] = None,
                 start_callback: Optional[StartCallback] = None) -> None:
        self.config = config
        self.timeline = Timeline(config.secrets, event_callback, start_callback,
                                 on_change=None if config.check else self._audit_step)
        self.hosts: Optional[set] = None  # the inventory's hosts, read at the first change (audit targets)
        self.start_record: Optional[threading.Thread] = None
        self.changed_targets: set = set()

    def run(self) -> RunResult:
        config = self.config
        remove_stale_private_dirs()
        _mkdir_private(config.run_dir.parent)
        config.run_dir.mkdir(mode=0o700)
        started_at, started = _now_iso(), time.monotonic()
        self._mark("running", started_at)
        # The start record is written (and fsync'd) while ansible-playbook starts, not before: every later
        # record of the run waits for it (_after_start), so the trail keeps the run's order.
        self.start_record = threading.Thread(target=audit.append_quietly, name="audit-start", daemon=True,
                                             args=(audit.run_start(
                                                 config.run_id, config.runbook.name,
                                                 params.redact(config.runbook, config.extravars), check=config.check,
                                                 operator=config.operator, inventory=str(config.inventory),
                                                 limit=config.limit),))
        self.start_record.start()
        status, rc, error = self._execute()
        result = self._result(status, rc, error, started_at, time.monotonic() - started)
        # The end record first: it is small (it fits where a full disk refuses result.json) and its head is
        # anchored in result.json.
        result.audit_head = audit.anchor_of(self._audit_end(result))
        self._write(result)
        holder = busy_holder(result.steps)
        if holder is not None:
            raise run_busy(config, holder, result)
        return result

    def _audit_step(self, step: Step, before_after: Dict[str, Any], named_in_result: List[str]) -> None:
        """One audit record; its `targets`: the step's host and the inventory hosts it acted on (a database
        runbook's tasks run on localhost and name the node in their arguments, results or task name)."""
        config = self.config
        self._after_start()
        named = set(named_in_result) | set(_words(step.task))
        targets = sorted({step.host} | (named & self._inventory_hosts()) - {""})
        self.changed_targets.update(targets)
        audit.append_quietly(audit.step_record(config.run_id, config.runbook.name, dict(step.to_dict(),
                             status=step.status), operator=config.operator, targets=targets, **before_after))

    def _inventory_hosts(self) -> set:
        """The inventory's host names, read once (at the run's first change), {} when it cannot be read here."""
        if self.hosts is None:
            names = yaml_inventory_hosts(self.config.inventory)
            self.hosts = names if names is not None else set(_limited_hosts(self.config.inventory, "all", "all") or [])
        return self.hosts

    def _after_start(self) -> None:
        if self.start_record is not None:
            self.start_record.join(audit.LOCK_TIMEOUT + 10)

    def _audit_end(self, result: RunResult) -> Optional[Dict[str, Any]]:
        config = self.config
        self._after_start()
        failing = result.failing_step
        return audit.append_quietly(audit.run_end(
            config.run_id, config.runbook.name, operator=config.operator, status=result.status, rc=result.rc,
            check=config.check, duration_seconds=result.duration_seconds,
            failing_step=f"{failing.task} on {failing.host}" if failing else None,
            targets=[] if config.check else sorted(self.changed_targets)))

    def _mark(self, status: str, started_at: str) -> None:
        """run.json: `running` with this process's pid and start time, so `runbook report` can tell a run
        still going from one that was killed; its final status once the run ends."""
        config = self.config
        marker = {"run_id": config.run_id, "runbook": config.runbook.name, "title": config.runbook.title,
                  "playbook": str(config.runbook.path),
                  "status": status, "check": config.check, "started_at": started_at,
                  "inventory": str(config.inventory), "extravars": params.redact(config.runbook, config.extravars),
                  "rto_target_seconds": config.runbook.rto_seconds, "rpo_target_seconds": config.runbook.rpo_seconds,
                  "point_of_no_return": config.runbook.point_of_no_return, "operator": config.operator,
                  **_process_marker()}
        _write_private(config.run_dir / MARKER_FILE, json.dumps(marker, indent=2, default=str) + "\n")

    def _execute(self) -> tuple[str, Optional[int], str]:
        from ansible_runner.config.runner import RunnerConfig
        from ansible_runner.runner import Runner

        close_exited_children_at_once()
        private_data_dir = make_private_data_dir(self.config.run_id)
        reserve_space(private_data_dir / SPACE_RESERVE_FILE)  # freed with the folder, before the result is written
        saved = _save_signal_handlers()
        try:
            write_extravars(private_data_dir, self.config.playbook_extravars())
            write_settings(private_data_dir)
            runner_config = RunnerConfig(**self.config.runner_config_kwargs(private_data_dir))
            runner_config.prepare()
            runner_config.command = guarded(runner_config.command, private_data_dir)
            stopper = Stopper(private_data_dir, self.config.timeout)
            runner = Runner(runner_config, event_handler=self.timeline, status_handler=_forget_environment,
                            cancel_callback=stopper)
            runner.run()
            return ("timeout" if stopper.timed_out else str(runner.status)), runner.rc, ""
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                log.exception("ansible-runner failed to run %s", self.config.runbook.name)
                return "failed", finish_abandoned_child(), f"ansible-runner could not run the playbook: {exc}"
            rc = finish_abandoned_child()
            log.error("the state folder's disk (%s) filled up during run %s: its output from then on was not "
                      "recorded; ansible-playbook was left to finish (rc %s)", self.config.run_dir,
                      self.config.run_id, rc)
            return ("successful" if rc == 0 else "failed"), rc, (
                f"the state folder's disk filled up during the run ({exc.strerror}, {self.config.run_dir}): the "
                f"playbook's steps and facts from then on were not recorded. ansible-playbook was left to finish: "
                f"rc {rc} (0: it ended with its end state verified). The audit trail has its start and end.")
        except Exception as exc:  # ansible-runner could not start: report it as a failed run
            log.exception("ansible-runner failed to run %s", self.config.runbook.name)
            return "failed", finish_abandoned_child(), f"ansible-runner could not run the playbook: {exc}"
        finally:
            _restore_signal_handlers(saved)
            shutil.rmtree(private_data_dir, ignore_errors=True)

    def _result(self, status: str, rc: Optional[int], error: str, started_at: str, elapsed: float) -> RunResult:
        config = self.config
        result = RunResult(
            run_id=config.run_id,
            runbook=config.runbook.name,
            status=status,
            rc=rc,
            check=config.check,
            started_at=started_at,
            ended_at=_now_iso(),
            duration_seconds=round(elapsed, 3),
            inventory=str(config.inventory),
            extravars=params.redact(config.runbook, config.extravars),
            steps=self.timeline.steps,
            facts=self.timeline.facts,
            run_dir=str(config.run_dir),
            title=config.runbook.title,
            rto_target_seconds=config.runbook.rto_seconds,
            rpo_target_seconds=config.runbook.rpo_seconds,
            stats=self.timeline.stats,
            error=error,
            point_of_no_return=config.runbook.point_of_no_return,
            operator=config.operator,
            os_user=audit.os_user(),
        )
        if not result.succeeded and not result.failing_step and not result.error:
            result.error = scrub_text(self._output_tail(), self.timeline.secrets)
        return result

    def _output_tail(self, lines: int = 25) -> str:
        stdout = self.config.artifact_dir / self.config.run_id / "stdout"
        try:
            text = stdout.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return _tail(re.sub(r"\x1b\[[0-9;]*m", "", text), lines)

    def _write(self, result: RunResult) -> None:
        """The run folder's files, each whole or not at all. A file that cannot be written (a full disk) is
        named in an error and the others are still tried: the run has happened, its result is returned."""
        run_dir = self.config.run_dir
        from erlmcp_dr import html_report  # after the run: not on the way to its first task

        unwritten = [name for name, write in (
            (RESULT_FILE, lambda: result.save(run_dir)),
            (REPORT_FILE, lambda: _write_private(run_dir / REPORT_FILE, report.render_markdown(result))),
            (HTML_REPORT_FILE, lambda: _write_private(run_dir / HTML_REPORT_FILE, html_report.render(result))),
            ("artifacts command", lambda: forget_environment(self.config.artifact_dir / self.config.run_id
                                                             / "command")),
            (MARKER_FILE, lambda: self._mark(result.status, result.started_at)),
        ) if not _written(write, run_dir / name)]
        if unwritten:
            log.error("run %s ended %s, but %s could not be written to %s (see above): `runbook report %s` shows "
                      "what the folder holds; the audit trail has the run's end", self.config.run_id, result.status,
                      ", ".join(unwritten), run_dir, self.config.run_id)
        leaked = scrub_dir(run_dir, self.timeline.secrets)
        make_private(run_dir)
        if leaked or self.timeline.leaks:
            log.warning(
                "run %s: the value of a no_log parameter (%s) was found in %d file(s) and %d event(s) of the run; "
                "replaced with %s. A task of runbook %s prints or returns it: add no_log there.",
                self.config.run_id, ", ".join(params.secret_names(self.config.runbook)), len(leaked),
                self.timeline.leaks, params.REDACTED, self.config.runbook.name,
            )


def run(name: Optional[str] = None, config: Optional[RunConfig] = None,
        event_callback: Optional[StepCallback] = None, **kwargs: Any) -> RunResult:
    """Runs a runbook and returns its result (also written to <state_home>/runs/<run_id>/).

    Shaped like ansible_runner.run(): a thin facade over a config object. Either pass a prepared
    `config` (RunConfig.prepare(...)), or the runbook's `name` and RunConfig.prepare's keywords:
    inventory, extravars, check, diff, run_id, limit, verbosity, timeout, playbooks_dir, operator (who runs it,
    recorded in the audit trail beside the OS user).

    Raises UnknownRunbook / ParameterError before anything runs; RunBusy when the playbook's run lock
    (erlmcp.dr.run_lock) turned the run away (its RunResult is `RunBusy.result`). A runbook that fails
    returns a RunResult with status 'failed'.
    """
    if config is None:
        if name is None:
            raise ParameterError("name", "run() needs a runbook name or a prepared config")
        config = RunConfig.prepare(name, **kwargs)
    elif name is not None or kwargs:
        raise ParameterError("config", "pass either a prepared config or a runbook name with its options, not both")
    return RunbookRun(config, event_callback).run()


def run_dir_of(run_id: str) -> Path:
    return paths.state_home() / "runs" / run_id


# ---------------------------------------------------------------- scrubbing


def scrub_dir(directory: Path, values: List[str]) -> List[Path]:
    """Replaces every occurrence of the values in every file below `directory`; returns the files changed."""
    needles = [value for value in values if len(value) >= MIN_SCRUB_LENGTH]
    if not needles:
        return []
    changed = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        raw = path.read_bytes()
        text = raw.decode("utf-8", errors="surrogateescape")
        clean = scrub_text(text, needles)
        if clean != text:
            path.write_bytes(clean.encode("utf-8", errors="surrogateescape"))
            changed.append(path)
    return changed


def forget_environment(path: Path) -> None:
    """ansible-runner's `command` artifact records the whole environment (DATABASE_URL, SSHPASS, ...): keep the
    argv, the working directory and the NAMES of the environment variables only."""
    data = _read_json(path)
    env = data.get("env")
    if not isinstance(env, dict):
        return
    data["env"] = sorted(env)
    data["env_values"] = "not recorded: they may hold secrets"
    _write_private(path, json.dumps(data))


def _forget_environment(status_data: Dict[str, Any], runner_config: Any = None) -> None:
    """ansible-runner status handler: at `running` the `command` artifact has just been written, with the
    environment: rewrite it before ansible-playbook starts."""
    if status_data.get("status") == "running" and runner_config is not None:
        forget_environment(Path(runner_config.artifact_dir) / "command")


def make_private(directory: Path) -> None:
    """Directories 0700, files 0600, below `directory` (itself included)."""
    for path in [directory, *directory.rglob("*")]:
        if path.is_symlink():
            continue
        try:
            os.chmod(path, 0o700 if path.is_dir() else 0o600)
        except OSError:
            log.debug("could not restrict %s", path, exc_info=True)


# ---------------------------------------------------------------- helpers


def _write_private(path: Path, text: str) -> None:
    """Writes `text` to `path`, 0600 (never readable by others, not even for a moment), whole or not at all."""
    paths.write_private_atomic(path, text)


def reserve_space(path: Path, size: int = SPACE_RESERVE_BYTES) -> bool:
    """Allocates `size` bytes to `path` (posix_fallocate: really taken from the file system, not a sparse hole).
    False, logged, when it cannot: the run goes on without the reserve."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        log.warning("could not reserve space for the run's end in %s: %s", path.parent, exc)
        return False
    try:
        os.posix_fallocate(fd, 0, size)
        return True
    except OSError as exc:
        log.warning("could not reserve %d bytes for the run's end in %s: %s", size, path.parent, exc)
        os.unlink(path)
        return False
    finally:
        os.close(fd)


def _written(write: Callable[[], Any], path: Path) -> bool:
    """Runs one write of the run folder; False (logged with the folder's free space) when it fails."""
    try:
        write()
    except OSError as exc:
        free = shutil.disk_usage(path.parent).free if path.parent.exists() else None
        log.error("could not write %s: %s (%s bytes free there)", path, exc.strerror or exc, free)
        return False
    return True


def _mkdir_private(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_signal_handlers() -> Optional[Dict[int, Any]]:
    if threading.current_thread() is not threading.main_thread():
        return None
    return {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(saved: Optional[Dict[int, Any]]) -> None:
    for number, handler in (saved or {}).items():
        if handler is not None:
            signal.signal(number, handler)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text_or_none(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return " ".join(item.strip() for item in value)
    return json.dumps(value, default=str)


def _words(text: str) -> List[str]:
    return re.findall(r"[A-Za-z0-9_.-]+", text or "")


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
