"""`runbook run <composed runbook>`: the confirmation (with the steps and the point of no return shown first),
one line per step on stderr as it ends, the outcome, exit 0 only when every step was verified."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict

from erlmcp_dr.catalog import Runbook
from erlmcp_dr.compose import run as composed
from erlmcp_dr.compose.engine import StepRecord
from erlmcp_dr.errors import ParameterError
from erlmcp_dr.reporting import report

PROG = "runbook"


def check_before_asking(args: argparse.Namespace, runbook: Runbook) -> None:
    """What refuses the run before the confirmation question (raises ParameterError / a workflow error)."""
    if args.limit:
        raise ParameterError("limit", f"--limit does not apply to the composed runbook {runbook.name}: each step "
                                      "acts on the hosts of the regions named")
    composed.workflow_of(runbook, args.playbooks_dir)  # a broken workflow stops here, before the question


def execute(args: argparse.Namespace, runbook: Runbook, extravars: Dict[str, Any]) -> bool:
    """Runs the composed runbook once confirmed (cli.py asks); prints its report; True when it succeeded."""
    result = composed.run(runbook, inventory=args.inventory, extravars=extravars, run_id=args.run_id,
                          operator=args.operator, playbooks_dir=args.playbooks_dir, listener=progress)
    details = result.summary.get("details") or {}
    if args.json:
        print(result.to_json())
    else:
        print(report.render_terminal(result))
    print(f"{PROG}: {runbook.name} {details.get('status')}: {result.summary.get('reason')}", file=sys.stderr)
    if details.get("resume_command"):
        print(f"{PROG}: to finish the move, run: {details['resume_command']}", file=sys.stderr)
    return bool(result.succeeded)


def steps_text(runbook: Runbook) -> str:
    lines = [f"{runbook.title}: the steps, in order"]
    lines += [f"  {step.indented()}" for step in runbook.steps]
    return "\n".join(lines)


def progress(record: StepRecord) -> None:
    phase = "undo " if record.phase == "undo" else ""
    state = "verified" if record.verified else "FAILED"
    marker = "  [point of no return passed]" if record.point_of_no_return and record.verified else ""
    child = f" run {record.run_id}" if record.run_id else ""
    detail = f": {'; '.join(record.problems)}" if record.problems else ""
    print(f"{PROG}: {phase}{record.step} ({record.runs}{child}) {state} in {record.duration:.1f}s{marker}{detail}",
          file=sys.stderr, flush=True)
