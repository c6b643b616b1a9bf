"""Runs a runbook through ansible-runner and leaves a run folder behind.

Shaped like ansible-runner's interface.py: `run()` is a thin facade that builds a
`RunConfig` (everything decided and checked before anything starts) and hands it to a
`RunbookRun`, which holds the inventory lock, drives ansible-runner, turns its events
into a timeline and writes the run folder:

    <state_home>/runs/<run_id>/
        result.json            RunResult.to_dict()
        report.md              the human report
        artifacts/<run_id>/    ansible-runner's artifacts (job_events, stdout, rc, status, ...)

ansible-runner's private_data_dir (where it writes extra vars, which may hold secrets)
is a temporary directory outside the run folder, removed when the run ends.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

from erlmcp_dr import catalog, params, paths, report
from erlmcp_dr.catalog import Runbook
from erlmcp_dr.errors import ParameterError, RunBusy
from erlmcp_dr.result import REPORT_FILE, RunResult, Step

log = logging.getLogger(__name__)

StepCallback = Callable[[Step], None]

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
_SECRET_ENV = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE|_KEY$|^AWS_|WEBHOOK", re.IGNORECASE)
_MIN_SCRUB_LENGTH = 4  # shorter values would mangle unrelated text; such a value is no secret anyway
# Extra vars every run passes to its playbook besides the runbook's parameters.
RUN_ID_VAR = "erlmcp_dr_run_id"
RUN_DIR_VAR = "erlmcp_dr_run_dir"


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

    @classmethod
    def prepare(
        cls,
        name: str,
        inventory: Optional[os.PathLike | str] = None,
        extravars: Optional[Mapping[str, Any]] = None,
        check: bool = False,
        diff: bool = True,
        run_id: Optional[str] = None,
        limit: Optional[str] = None,
        verbosity: int = 0,
        timeout: Optional[int] = None,
        playbooks_dir: Optional[os.PathLike | str] = None,
    ) -> RunConfig:
        runbook = catalog.load(name, playbooks_dir)
        values = params.validate(runbook, extravars)
        run_id = run_id or new_run_id(runbook.name)
        if not _RUN_ID.match(run_id):
            raise ParameterError("run_id", f"run id {run_id!r} must be letters, digits, '.', '_' or '-'")
        run_dir = paths.state_home() / "runs" / run_id
        if run_dir.exists():
            raise ParameterError("run_id", f"run {run_id} already exists at {run_dir}; choose another run id")
        return cls(
            runbook=runbook,
            inventory=resolve_inventory(inventory),
            extravars=values,
            run_id=run_id,
            run_dir=run_dir,
            check=check,
            diff=diff,
            limit=limit,
            verbosity=int(verbosity or 0),
            timeout=timeout,
            secrets=params.secret_values(runbook, values),
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
        root = paths.collection_root()
        env = {
            "ANSIBLE_COLLECTIONS_PATH": str(paths.collections_path()),
            "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        }
        # ansible-playbook sits next to this interpreter in a virtualenv that may not be on PATH.
        bindir = Path(sys.executable).parent
        if (bindir / "ansible-playbook").exists():
            env["PATH"] = os.pathsep.join([str(bindir), os.environ.get("PATH", os.defpath)])
        return env

    def runner_kwargs(self, private_data_dir: str, event_handler: Callable[[dict], bool]) -> Dict[str, Any]:
        extravars = dict(self.extravars)
        extravars[RUN_ID_VAR] = self.run_id
        extravars[RUN_DIR_VAR] = str(self.run_dir)
        kwargs: Dict[str, Any] = {
            "private_data_dir": private_data_dir,
            "playbook": str(self.runbook.path),
            "project_dir": str(self.runbook.path.parent),
            "inventory": str(self.inventory),
            "extravars": extravars,
            "envvars": self.envvars(),
            "artifact_dir": str(self.artifact_dir),
            "ident": self.run_id,
            "quiet": True,
            "event_handler": event_handler,
        }
        if self.cmdline:
            kwargs["cmdline"] = self.cmdline
        if self.limit:
            kwargs["limit"] = self.limit
        if self.verbosity:
            kwargs["verbosity"] = self.verbosity
        if self.timeout:
            kwargs["timeout"] = self.timeout
        return kwargs


def new_run_id(name: str, now: Optional[dt.datetime] = None) -> str:
    """`20261123T150102Z-database_failover-3fa2`: sortable by time, readable, unique."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{name}-{secrets.token_hex(2)}"


def resolve_inventory(inventory: Optional[os.PathLike | str]) -> Path:
    path = Path(inventory).expanduser() if inventory else paths.collection_root() / "inventories" / "lab"
    path = path.resolve()
    if not path.exists():
        hint = " (the local lab's inventory: `runbook lab up` creates the lab)" if not inventory else ""
        raise ParameterError("inventory", f"inventory {path} does not exist{hint}")
    return path


# ---------------------------------------------------------------- the lock


def lock_path(inventory: os.PathLike | str) -> Path:
    digest = hashlib.sha256(os.path.realpath(inventory).encode()).hexdigest()[:16]
    return paths.state_home() / "locks" / f"{digest}.lock"


@contextmanager
def inventory_lock(inventory: os.PathLike | str, run_id: str, runbook: str = "") -> Iterator[Path]:
    """One run per inventory at a time: a non-blocking flock, released when the run ends (or the process dies)."""
    path = lock_path(inventory)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(fd)
        os.close(fd)
        raise RunBusy(str(inventory), run_id=str(holder.get("run_id", "")), pid=holder.get("pid"),
                      since=str(holder.get("started_at", ""))) from None
    try:
        info = {"run_id": run_id, "runbook": runbook, "pid": os.getpid(), "started_at": _now_iso(),
                "inventory": os.path.realpath(inventory)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _lock_holder(fd: int) -> Dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 65536, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------- the timeline


class Timeline:
    """ansible-runner event handler: steps from runner_on_* events, facts from set_stats."""

    def __init__(self, secrets: List[str], on_step: Optional[StepCallback] = None) -> None:
        self.secrets = [value for value in secrets if len(value) >= _MIN_SCRUB_LENGTH]
        self.on_step = on_step
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
            self._notify(step)
        elif kind == "playbook_on_stats":
            self.facts = self._scrubbed(data.get("artifact_data") or {})
            self.stats = {key: data.get(key) or {} for key in
                          ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")}
        return True  # keep the event: ansible-runner writes it to job_events/

    def _notify(self, step: Step) -> None:
        if self.on_step is None:
            return
        try:
            self.on_step(step)
        except Exception:  # a broken progress display must not stop a failover
            log.exception("event_callback failed on step %r", step.task)

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
    """Executes one RunConfig: lock, ansible-runner, timeline, run folder, scrub."""

    def __init__(self, config: RunConfig, event_callback: Optional[StepCallback] = None) -> None:
        self.config = config
        self.timeline = Timeline(config.secrets, event_callback)

    def run(self) -> RunResult:
        config = self.config
        with inventory_lock(config.inventory, config.run_id, config.runbook.name):
            config.run_dir.mkdir(parents=True, exist_ok=False)
            started_at, started = _now_iso(), time.monotonic()
            status, rc, error = self._execute()
            result = self._result(status, rc, error, started_at, time.monotonic() - started)
            self._write(result)
        return result

    def _execute(self) -> tuple[str, Optional[int], str]:
        import ansible_runner

        private_data_dir = tempfile.mkdtemp(prefix=f"erlmcp-dr-{self.config.run_id}-")
        saved = _save_signal_handlers()
        try:
            runner = ansible_runner.run(**self.config.runner_kwargs(private_data_dir, self.timeline))
            return str(runner.status), runner.rc, ""
        except Exception as exc:  # ansible-runner could not start: report it as a failed run
            log.exception("ansible-runner failed to run %s", self.config.runbook.name)
            return "failed", None, f"ansible-runner could not run the playbook: {exc}"
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
        result.save(self.config.run_dir)
        (self.config.run_dir / REPORT_FILE).write_text(report.render_markdown(result), encoding="utf-8")
        _redact_command_env(self.config.artifact_dir / self.config.run_id / "command")
        leaked = scrub_dir(self.config.run_dir, self.timeline.secrets)
        if leaked or self.timeline.leaks:
            log.warning(
                "run %s: the value of a no_log parameter (%s) was found in %d file(s) and %d event(s) of the run; "
                "replaced with %s. A task of runbook %s prints or returns it: add no_log there.",
                self.config.run_id, ", ".join(params.secret_names(self.config.runbook)), len(leaked),
                self.timeline.leaks, params.REDACTED, self.config.runbook.name,
            )


def run(
    name: str,
    inventory: Optional[os.PathLike | str] = None,
    extravars: Optional[Mapping[str, Any]] = None,
    check: bool = False,
    diff: bool = True,
    run_id: Optional[str] = None,
    event_callback: Optional[StepCallback] = None,
    limit: Optional[str] = None,
    verbosity: int = 0,
    *,
    timeout: Optional[int] = None,
    playbooks_dir: Optional[os.PathLike | str] = None,
) -> RunResult:
    """Runs runbook `name` and returns its result (also written to <state_home>/runs/<run_id>/).

    Raises UnknownRunbook / ParameterError before anything runs, RunBusy when another run
    holds the inventory. A runbook that fails returns a RunResult with status 'failed'.
    """
    config = RunConfig.prepare(
        name, inventory=inventory, extravars=extravars, check=check, diff=diff, run_id=run_id,
        limit=limit, verbosity=verbosity, timeout=timeout, playbooks_dir=playbooks_dir,
    )
    return RunbookRun(config, event_callback).run()


def run_dir_of(run_id: str) -> Path:
    return paths.state_home() / "runs" / run_id


# ---------------------------------------------------------------- scrubbing


def scrub_text(text: str, values: List[str]) -> str:
    for value in values:
        if len(value) < _MIN_SCRUB_LENGTH:
            continue
        text = text.replace(value, params.REDACTED)
        escaped = json.dumps(value)[1:-1]
        if escaped != value:
            text = text.replace(escaped, params.REDACTED)
    return text


def scrub_dir(directory: Path, values: List[str]) -> List[Path]:
    """Replaces every occurrence of the values in every file below `directory`; returns the files changed."""
    needles = [value for value in values if len(value) >= _MIN_SCRUB_LENGTH]
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


def _redact_command_env(path: Path) -> None:
    """ansible-runner's `command` artifact records the whole environment: hide values named like secrets."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    env = data.get("env") if isinstance(data, dict) else None
    if not isinstance(env, dict):
        return
    data["env"] = {key: params.REDACTED if _SECRET_ENV.search(key) and value else value for key, value in env.items()}
    path.write_text(json.dumps(data), encoding="utf-8")


# ---------------------------------------------------------------- helpers


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


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
