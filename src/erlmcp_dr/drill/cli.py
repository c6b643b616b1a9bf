"""The drill's commands: `runbook run dr_drill -e kind=...` (cli.py hands it here) and `runbook drill export
<run id>` (a drill as a Chaos Toolkit experiment and journal)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict

from erlmcp_dr import paths
from erlmcp_dr.catalog import Runbook
from erlmcp_dr.errors import ParameterError

PROG = "runbook"


def execute(args: argparse.Namespace, runbook: Runbook, extravars: Dict[str, Any], confirm: Callable[..., None],
            interactive: Callable[[], bool], confirmation_required: Any) -> int:
    """Confirms (a drill injects a real fault), runs it, prints the verdict table; 0 only for a passed drill."""
    if args.limit:
        raise ParameterError("limit", "--limit does not apply to dr_drill: the fault's target is the lab's")
    # The drill's engine (the lab, the composer, HTTP and e-mail) is imported here, not at the top: every `runbook`
    # process imports this module, and the engine was most of the CLI's start (docs/speed-failover.md).
    from erlmcp_dr.drill import run as drill

    inventory = str(args.inventory or "the default inventory")
    if runbook.confirm and not args.yes:
        if not interactive():
            raise confirmation_required(runbook.name, inventory)
        confirm(runbook, inventory)
    result = drill.run(runbook, inventory=args.inventory, extravars=extravars, run_id=args.run_id,
                       operator=args.operator, playbooks_dir=args.playbooks_dir, listener=_progress)
    details = result.summary.get("details") or {}
    if args.json:
        print(result.to_json())
    else:
        print(render_table(details))
    print(f"{PROG}: dr_drill {details.get('kind')} {details.get('verdict')}: {details.get('verdict_reason')} "
          f"(run {result.run_id}; `{PROG} report {result.run_id} --html` shows the client's timeline)",
          file=sys.stderr)
    return 0 if result.succeeded else 1


def render_table(details: Dict[str, Any]) -> str:
    rows = [("criterion", "target", "measured", "verdict", "source")]
    for c in details.get("criteria") or []:
        rows.append((str(c["name"]), str(c["target"]), _shown(c["measured"]), str(c["verdict"]), str(c["source"])))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"drill {details.get('kind')}: {details.get('verdict')} ({details.get('verdict_reason')})"]
    lines += ["  " + "  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4][:70] for r in rows]
    return "\n".join(lines)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _progress(line: str) -> None:
    print(f"{PROG}: dr_drill: {line}", file=sys.stderr, flush=True)


def register(sub: Any, make_sub: Callable[..., argparse.ArgumentParser]) -> None:
    """Adds `runbook drill export RUN_ID [--out DIR]` (cli.build_parser's hook)."""
    parser = make_sub(sub, "drill", "a drill's result as a Chaos Toolkit experiment and journal (JSON)", command)
    parser.add_argument("action", choices=["export"], help="export: write <run id>.experiment.json and "
                                                          "<run id>.journal.json")
    parser.add_argument("run_id", metavar="RUN_ID", help="a dr_drill run id (as printed by `runbook run dr_drill`)")
    parser.add_argument("--out", metavar="DIR", default=".", help="folder to write them to (default: here)")


def command(args: argparse.Namespace) -> int:
    from erlmcp_dr.drill import chaos as drill_chaos  # on use, as in execute
    from erlmcp_dr.drill import run as drill

    run_dir = paths.state_home() / "runs" / args.run_id
    result_file = run_dir / "result.json"
    if "/" in args.run_id or not result_file.is_file():
        raise ParameterError("run_id", f"no finished run {args.run_id!r} in {run_dir.parent} (expected a dr_drill "
                                       "run id with its result.json)")
    result = json.loads(result_file.read_text(encoding="utf-8"))
    if result.get("runbook") != drill.RUNBOOK:
        raise ParameterError("run_id", f"run {args.run_id} is a {result.get('runbook')} run; expected a dr_drill run")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, document in (("experiment", drill_chaos.experiment(result)), ("journal", drill_chaos.journal(result))):
        path = out / f"{args.run_id}.{suffix}.json"
        path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        written.append(str(path))
    print("\n".join(written))
    return 0
