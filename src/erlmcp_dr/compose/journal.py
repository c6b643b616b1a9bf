"""The journal of a composed run: what a run killed mid-move leaves for the run that finishes it.

A composed run writes `journal.json` in its run folder before each step runs and after each ends (atomic writes:
a kill -9 leaves the previous version or the new one, whole). The folder of a run that ended has `result.json`
too and the journal's status is its outcome; a journal still `running` belongs to a run that was killed.

A new run of the same runbook on the same targets (a lock key in common) resumes the move left unfinished: a run
killed (its lock holder gone, its journal still `running`: found through the lock records, compose/run.py) or,
else, the latest run that ended `stopped` after the point of no return (its resume command starts such a run). It:
- it keeps the interrupted run's incident (unless given one), so every notification belongs to one incident;
- if the interrupted run had ENTERED the point-of-no-return step, the new run starts past it (roll forward only):
  the killed child may have promoted, and undoing an earlier step (Redis back to the region left) would split
  the service between two regions;
- such a run must go to the same region: another target is refused before anything changes;
- it marks the journal it resumes (`interrupted (resumed by ...)`), and its own carries the point of no return on,
  so a chain of killed or stopped runs is finished by the next one;
- it carries on `changes`: what the interrupted run's built-in steps were about to change or changed, each written
  BEFORE the change (a write-ahead intent: a kill inside the change leaves it recorded), keyed by step id. The new
  run's step reads it (compose/hooks.ActionJournal), so its undo also undoes what the killed run did (issue 17: the
  application a killed isolation stopped is started again when the resumed move is undone).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from erlmcp_dr import paths

JOURNAL_FILE = "journal.json"
RUNNING = "running"
STOPPED = "stopped"  # compose.engine.STOPPED: past the point of no return, to be finished by a re-run


@dataclass
class Journal:
    run_id: str
    runbook: str
    from_region: str
    to_region: str
    incident_id: str
    inventory: str = ""
    locks: List[str] = field(default_factory=list)  # the lock keys of the move: its targets
    status: str = RUNNING
    entered: List[str] = field(default_factory=list)  # forward steps started, in order
    verified: List[str] = field(default_factory=list)  # forward steps verified, in order
    undo_entered: List[str] = field(default_factory=list)
    entered_point_of_no_return: bool = False  # this run, or a run it resumes, started the point-of-no-return step
    resumes: Optional[str] = None  # the interrupted run this one finishes
    # step id -> what that built-in step changes (written before the change; carried on by a resuming run)
    changes: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    updated_at: str = ""

    def save(self, run_dir: Path) -> None:
        self.updated_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        paths.write_private_atomic(run_dir / JOURNAL_FILE, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @property
    def interrupted(self) -> bool:
        return self.status == RUNNING


def load(run_dir: Path) -> Optional[Journal]:
    """The journal in `run_dir`, or None when there is none or it cannot be read (a run from before journals)."""
    try:
        data: Dict[str, Any] = json.loads((run_dir / JOURNAL_FILE).read_text(encoding="utf-8"))
        known = set(Journal.__dataclass_fields__)
        return Journal(**{key: value for key, value in data.items() if key in known})
    except (OSError, ValueError, TypeError):
        return None


def unfinished_move(runs_dir: Path, holders: List[Dict[str, Any]], runbook: str, locks: List[str]
                    ) -> Optional[Journal]:
    """The move a new run of `runbook` on those lock keys finishes: a killed one among the gone lock holders, else the
    latest run that stopped after the point of no return and that no run resumed yet; None when there is none."""
    killed = interrupted_run(runs_dir, holders, runbook)
    if killed is not None:
        return killed
    stopped = [found for found in (load(path.parent) for path in runs_dir.glob(f"*-{runbook}-*/{JOURNAL_FILE}"))
               if found is not None and found.status == STOPPED and set(found.locks) & set(locks)
               and found.runbook == runbook and found.entered_point_of_no_return]
    return max(stopped, key=lambda found: found.updated_at, default=None)


def interrupted_run(runs_dir: Path, holders: List[Dict[str, Any]], runbook: str) -> Optional[Journal]:
    """The journal of the interrupted run of `runbook` among the lock holders that are gone, if any."""
    for holder in holders:
        run_id = str(holder.get("run_id") or "")
        if holder.get("runbook") != runbook or not run_id or "/" in run_id or run_id.startswith("."):
            continue
        found = load(runs_dir / run_id)
        if found is not None and found.interrupted:
            return found
    return None
