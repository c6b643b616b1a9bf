"""Runs a runbook through ansible-runner and leaves a run folder behind.

Shaped like ansible-runner's interface.py: `run()` is a thin facade that builds a
`RunConfig` (everything decided and checked before anything starts) and hands it to a
`RunbookRun`, which drives ansible-runner, turns its events into a timeline and writes
the run folder (0700; every file in it 0600):

    <state_home>/runs/<run_id>/
        run.json               the marker: status (running until the run ends), pid and its start time
        result.json            RunResult.to_dict()
        report.md              the human report
        report.html            the same as one self-contained page with a timeline chart (reporting/html_report.py)
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
ansible-playbook, its workers and the modules they run (not a daemon the run started): guard.py. The timeline
(events into steps) is timeline.py.

Why one file of ~780 lines: RunConfig (everything checked before a run starts) and RunbookRun (driving
ansible-runner, the run folder, the audit records, result.json) share the run folder's layout and its private
helpers; RunConfig is the next piece to move out (run_config.py) once the warm start (issue 19) needs it alone.
"""

from __future__ import annotations

import datetime as dt
import errno
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import yaml

from erlmcp_dr import audit, catalog, params, paths
from erlmcp_dr.catalog import Runbook
from erlmcp_dr.errors import ParameterError, RunBusy
from erlmcp_dr.guard import (
    NO_ROOT,
    Stopper,
    close_exited_children_at_once,
    finish_abandoned_child,
    guarded,
    kill_tree,
    kill_warm_server,
    process_alive,
    process_marker,
    start_record,
)
from erlmcp_dr.redaction import MIN_SCRUB_LENGTH, scrub_text
from erlmcp_dr.reporting import report
from erlmcp_dr.result import HTML_REPORT_FILE, MARKER_FILE, REPORT_FILE, RESULT_FILE, RunResult, Step
from erlmcp_dr.timeline import StartCallback, StepCallback, Timeline, tail
from erlmcp_dr.warm import parsed_inventory

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Extra vars every run passes to its playbook besides the runbook's parameters.
RUN_ID_VAR = "erlmcp_dr_run_id"
RUN_DIR_VAR = "erlmcp_dr_run_dir"
OPERATOR_VAR = "erlmcp_dr_operator"  # only when --operator / operator= is given (e.g. for the run lock's holder)
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
    parsed_inventory: Optional[str] = None  # a composed run's inventory parse for it (warm/parsed_inventory)

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
        if self.parsed_inventory:
            env[parsed_inventory.ENV] = self.parsed_inventory
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
            # Facts live in the run's memory, as ansible-playbook's own default: ansible-runner's default, jsonfile,
            # wrote each host's facts to artifacts/fact_cache and ansible-core 2.19 decoded them again, tags and
            # all, at every task's variables (about 40 ms of a switchover); no runbook keeps facts across runs.
            "fact_cache_type": "memory",
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
    identity = tuple((str(path), paths.file_identity(path)) for path in files)
    if any(found is None for _, found in identity):
        return None
    hosts = _HOSTS_READ.get(identity)
    if hosts is None:
        hosts = _read_yaml_inventory_hosts(files)
        if hosts is None:
            return None
        _HOSTS_READ.clear()  # one inventory's worth: a composed run's children all read the same
        _HOSTS_READ[identity] = hosts
    return set(hosts)


# The host names of the inventory files last read, by those files' identity (a composed run's child runs read the
# same inventory, about 5 ms each for the lab's): host names only, never a variable.
_HOSTS_READ: Dict[tuple, frozenset] = {}


def _read_yaml_inventory_hosts(files: List[Path]) -> Optional[frozenset]:
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
    return frozenset(hosts)


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

# The steps that take the run lock: erlmcp.dr.run_lock, and the one-task starts (erlmcp.dr.pg_begin, dns_begin,
# redis_begin), which run it inside. Either one failing with `busy: true` means another run holds the lock; so does
# erlmcp.dr.redis_guard failing so (another run, from any controller, holds the Redis guard).
RUN_LOCK_ACTIONS = ("erlmcp.dr.run_lock", "erlmcp.dr.pg_begin", "erlmcp.dr.dns_begin", "erlmcp.dr.redis_begin",
                    "erlmcp.dr.redis_guard")


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
    paths.write_private_unsynced(path, unsafe_yaml(values))  # the private data dir: see write_private_unsynced
    return path


def write_settings(private_data_dir: Path) -> None:
    """ansible-runner settings: poll the child (and a cancel by SIGTERM/SIGINT) every second."""
    paths.write_private_unsynced(private_data_dir / "env" / "settings", json.dumps({"pexpect_timeout": 1}))


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
    paths.write_private_unsynced(staging / OWNER_FILE, json.dumps(process_marker()))
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
        owner = paths.read_json_object(path / OWNER_FILE)
        if not owner and path.name.startswith(".new-"):
            continue  # being made right now (it holds nothing yet)
        if not process_alive(owner):
            # A run killed whole (its guard too) can leave orphans outside any tree: its marker finds them; a warm
            # run's server ends its run when the guard goes, or here.
            kill_warm_server(start_record(path), os.path.abspath(path))
            kill_tree(NO_ROOT, include_root=False, marker=os.path.abspath(path))
            if _RUN_ID.match(path.name) and run_dir_of(path.name).is_dir():
                _close_killed_run(run_dir_of(path.name), path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _close_killed_run(run_dir: Path, private_data_dir: Path) -> None:
    """What a normal end does to its run folder, for a killed run: its secrets (the no_log parameters, read
    from its extra vars before they go) scrubbed from what it wrote, its `command` artifact without the environment's
    values (forget_environment), and every file 0600."""
    try:
        forget_environment(run_dir / "artifacts" / run_dir.name / "command")
        marker = paths.read_json_object(run_dir / MARKER_FILE)
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
        self.start: Dict[str, Any] = {}  # how ansible-playbook started (the guard's START_FILE): warm, or cold and why

    def run(self) -> RunResult:
        config = self.config
        remove_stale_private_dirs()
        _mkdir_private(config.run_dir.parent)
        config.run_dir.mkdir(mode=0o700)
        started_at, started = _now_iso(), time.monotonic()
        # run.json (`running`) and the audit start record are written (and fsync'd) while ansible-playbook starts, not
        # before: every later record of the run and its end files wait for them (_after_start), so the trail and the
        # folder keep the run's order.
        start = audit.run_start(config.run_id, config.runbook.name, params.redact(config.runbook, config.extravars),
                                check=config.check, operator=config.operator, inventory=str(config.inventory),
                                limit=config.limit)
        self.start_record = threading.Thread(target=self._record_start, name="audit-start", daemon=True,
                                             args=(start, started_at))
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

    def _record_start(self, start: Dict[str, Any], started_at: str) -> None:
        try:
            self._mark("running", started_at)
        except OSError as exc:  # a full disk: the run goes on (its end says what could not be written)
            _log_unwritten(self.config.run_dir / MARKER_FILE, exc)
        audit.append_quietly(start)

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
        _write_private(self.config.run_dir / MARKER_FILE, self._marker_text(status, started_at))

    def _marker_text(self, status: str, started_at: str) -> str:
        config = self.config
        marker = {"run_id": config.run_id, "runbook": config.runbook.name, "title": config.runbook.title,
                  "playbook": str(config.runbook.path),
                  "status": status, "check": config.check, "started_at": started_at,
                  "inventory": str(config.inventory), "extravars": params.redact(config.runbook, config.extravars),
                  "rto_target_seconds": config.runbook.rto_seconds, "rpo_target_seconds": config.runbook.rpo_seconds,
                  "point_of_no_return": config.runbook.point_of_no_return, "operator": config.operator,
                  **process_marker()}
        return json.dumps(marker, indent=2, default=str) + "\n"

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
            self.start = start_record(private_data_dir)
            _say_how_it_started(self.config.run_id, self.start)
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
        return tail(re.sub(r"\x1b\[[0-9;]*m", "", text), lines)

    def _write(self, result: RunResult) -> None:
        """The run folder's files, each whole or not at all and durable, written together (paths.write_private_files:
        one fsync's wait for all). A file that cannot be written (a full disk) is named in an error and the others are
        still tried: the run has happened, its result is returned."""
        run_dir = self.config.run_dir
        from erlmcp_dr.reporting import html_report  # after the run: not on the way to its first task

        command = self.config.artifact_dir / self.config.run_id / "command"
        unwritten = [] if _written(lambda: forget_environment(command), command) else ["artifacts command"]
        failed = paths.write_private_files({
            run_dir / RESULT_FILE: result.to_json() + "\n",
            run_dir / REPORT_FILE: report.render_markdown(result),
            run_dir / HTML_REPORT_FILE: html_report.render(result),
            run_dir / MARKER_FILE: self._marker_text(result.status, result.started_at),  # last: the run has ended
        })
        for path, exc in failed.items():
            _log_unwritten(path, exc)
            unwritten.append(path.name)
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


def forget_environment(path: Path, durable: bool = True) -> None:
    """ansible-runner's `command` artifact records the whole environment (DATABASE_URL, SSHPASS, ...): keep the
    argv, the working directory and the NAMES of the environment variables only. `durable=False`: the rewrite is
    atomic but not fsync'd (before ansible-playbook starts: ansible-runner wrote the original unsynced too; the run's
    end rewrites it durably, and a killed run's folder gets the same from the next run's sweep)."""
    data = paths.read_json_object(path)
    env = data.get("env")
    if not isinstance(env, dict):
        return
    data["env"] = sorted(env)
    data["env_values"] = "not recorded: they may hold secrets"
    (_write_private if durable else paths.write_private_unsynced)(path, json.dumps(data))


def _forget_environment(status_data: Dict[str, Any], runner_config: Any = None) -> None:
    """ansible-runner status handler: at `running` the `command` artifact has just been written, with the
    environment: rewrite it before ansible-playbook starts."""
    if status_data.get("status") == "running" and runner_config is not None:
        forget_environment(Path(runner_config.artifact_dir) / "command", durable=False)  # on the way to the spawn


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


def _say_how_it_started(run_id: str, start: Mapping[str, Any]) -> None:
    """A run that could not have its warm start says so (the CLI prints warnings): it ran cold, and why."""
    if start.get("mode") == "warm":
        log.debug("run %s: ansible-playbook forked by the warm zygote (run server %s)", run_id, start.get("pid"))
    elif start.get("fallback"):
        log.warning("run %s: ansible-playbook started cold, without the warm start: %s", run_id, start.get("reason"))


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
        _log_unwritten(path, exc)
        return False
    return True


def _log_unwritten(path: Path, exc: OSError) -> None:
    free = shutil.disk_usage(path.parent).free if path.parent.exists() else None
    log.error("could not write %s: %s (%s bytes free there)", path, exc.strerror or exc, free)


def _mkdir_private(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


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


def _words(text: str) -> List[str]:
    return re.findall(r"[A-Za-z0-9_.-]+", text or "")
