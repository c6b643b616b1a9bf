"""What a run leaves behind: its status, per-step timeline and published facts.

`RunResult.to_dict()` is what `result.json` in the run folder holds and what
`runbook ... --json` prints; `RunResult.load(run_dir)` reads it back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

RESULT_FILE = "result.json"
SUMMARY_SCHEMA_FILE = Path(__file__).with_name("summary.schema.json")  # the envelope's JSON Schema, in the wheel
REPORT_FILE = "report.md"
HTML_REPORT_FILE = "report.html"
MARKER_FILE = "run.json"  # in the run folder: status (running until it ends), pid, pid start time
STATUSES = ("successful", "failed", "canceled", "timeout", "running", "interrupted")  # the last two: no result.json


@dataclass
class Step:
    """One task's outcome on one host, from ansible-runner's runner_on_* events."""

    task: str
    host: str
    action: str = ""
    start: Optional[str] = None
    end: Optional[str] = None
    duration: Optional[float] = None
    changed: bool = False
    failed: bool = False
    skipped: bool = False
    unreachable: bool = False
    message: str = ""
    data: Dict[str, Any] = field(default_factory=dict)
    ignored: bool = False  # failed, but the task had ignore_errors (the run went on)
    role: str = ""

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "ignored" if self.ignored else "failed"
        if self.skipped:
            return "skipped"
        return "changed" if self.changed else "ok"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Step:
        return cls(**_known(cls, data))


@dataclass
class RunResult:
    run_id: str
    runbook: str
    status: str
    rc: Optional[int]
    check: bool
    started_at: str
    ended_at: str
    duration_seconds: float
    inventory: str
    extravars: Dict[str, Any] = field(default_factory=dict)
    steps: List[Step] = field(default_factory=list)
    facts: Dict[str, Any] = field(default_factory=dict)
    run_dir: str = ""
    title: str = ""
    rto_target_seconds: Optional[int] = None
    rpo_target_seconds: Optional[int] = None
    stats: Dict[str, Any] = field(default_factory=dict)  # playbook_on_stats counters per host
    error: str = ""  # when the run failed without a failed step (syntax error, crash): the output's tail
    point_of_no_return: Optional[str] = None  # the runbook's marker: a task name or an action (catalog.py)
    operator: Optional[str] = None  # `--operator` / run(operator=...), as recorded in the audit trail
    # The audit trail's head after this run's last record (audit.anchor_of): `runbook audit verify` compares the
    # trail with it to see records cut from its end, an emptied or deleted trail, a rewritten chain.
    audit_head: Optional[Dict[str, Any]] = None
    os_user: Optional[str] = None  # the OS account the run ran as (audit.os_user), whether or not --operator was given

    @property
    def summary(self) -> Dict[str, Any]:
        """The summary envelope the runbook published (docs/reports.md, summary.schema.json), {} when none."""
        summary = self.facts.get("summary")
        return summary if isinstance(summary, dict) else {}

    @property
    def succeeded(self) -> bool:
        return self.status == "successful" and self.rc == 0

    @property
    def failed_steps(self) -> List[Step]:
        return [step for step in self.steps if (step.failed and not step.ignored) or step.unreachable]

    @property
    def failing_step(self) -> Optional[Step]:
        """The step that ended the run: the last failed (not ignored) or unreachable one."""
        failed = self.failed_steps
        return failed[-1] if failed else None

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["succeeded"] = self.succeeded
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> RunResult:
        values = _known(cls, data)
        values["steps"] = [Step.from_dict(step) for step in data.get("steps") or []]
        return cls(**values)

    @classmethod
    def load(cls, run_dir: Path | str) -> RunResult:
        path = Path(run_dir) / RESULT_FILE
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def save(self, run_dir: Path | str) -> Path:
        """Writes result.json, readable by its owner only (0600), atomically: whole or not at all (a full disk
        leaves no truncated result.json behind)."""
        from erlmcp_dr.paths import write_private_atomic

        path = Path(run_dir) / RESULT_FILE
        write_private_atomic(path, self.to_json() + "\n")
        return path


def _known(cls: type, data: Dict[str, Any]) -> Dict[str, Any]:
    names = {item.name for item in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def summary_schema() -> Dict[str, Any]:
    """The JSON Schema of the summary envelope every runbook publishes (shipped in the package)."""
    return json.loads(SUMMARY_SCHEMA_FILE.read_text(encoding="utf-8"))
