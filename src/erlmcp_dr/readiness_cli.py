"""`runbook readiness`: "can we fail over right now?" as an exit code, a table and --json.

It runs the readiness runbook (playbooks/readiness.yml) like `runbook run readiness` does - a run folder, the
audit trail - and maps the runbook's verdict, published in its summary (details.verdict), to this command's own
exit codes: 0 ready, 1 warnings, 2 not ready (also when the run could not judge: no verdict is not a ready).
`runbook run`'s exit codes (0 succeeded, 1 failed, 2 usage, 3 busy) keep their meaning there.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Dict, List

from erlmcp_dr.reporting import report

RUNBOOK = "readiness"
EXIT_READY, EXIT_WARNINGS, EXIT_NOT_READY = 0, 1, 2
EXIT_BY_VERDICT = {"ready": EXIT_READY, "warnings": EXIT_WARNINGS, "not_ready": EXIT_NOT_READY}
EPILOG = """\
exit codes (this command's own):
  0  ready: every check passed       1  warnings: no check failed, some warned
  2  not ready: a check failed, or the checks could not run (the error is on stderr)"""


def register(sub: Any, make_sub: Callable[..., argparse.ArgumentParser]) -> None:
    """Adds the `readiness` command to the `runbook` parser (cli.build_parser's hook)."""
    parser = make_sub(sub, "readiness", "can we fail over right now? every readiness check, a table and an exit "
                      "code: 0 ready, 1 warnings, 2 not ready", command)
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("-i", "--inventory", metavar="INV",
                        help="inventory file or folder (default: the local lab, as for `runbook run`)")
    parser.add_argument("--json", action="store_true",
                        help="the verdict, counts and checks as JSON on stdout instead of the table")


def command(args: argparse.Namespace) -> int:
    from erlmcp_dr.runner import RunbookRun, RunConfig

    # Report mode: this command's exit code is the verdict; the run itself succeeds once the checks are published.
    config = RunConfig.prepare(RUNBOOK, inventory=args.inventory, playbooks_dir=args.playbooks_dir,
                               extravars={"require_ready": False})
    result = RunbookRun(config).run()
    details = report.details_of(result.facts)
    verdict = details.get("verdict")
    code = EXIT_BY_VERDICT.get(str(verdict), EXIT_NOT_READY)
    if args.json:
        print(json.dumps(as_json(details, result.run_id, verdict), indent=2, default=str))
    else:
        print("\n".join(details.get("table") or []))
    if verdict not in EXIT_BY_VERDICT:
        print(f"runbook: error: the readiness checks gave no verdict (run {result.run_id}, status {result.status}): "
              f"{result.error or 'see `runbook report ' + result.run_id + '`'}", file=sys.stderr)
    return code


def as_json(details: Dict[str, Any], run_id: str, verdict: Any) -> Dict[str, Any]:
    checks: List[Dict[str, Any]] = list(details.get("checks") or [])
    return {"verdict": verdict or "not_ready", "exit_code": EXIT_BY_VERDICT.get(str(verdict), EXIT_NOT_READY),
            "counts": details.get("counts") or {}, "elapsed": details.get("elapsed"),
            "probe_seconds": details.get("probe_seconds") or {}, "checked_at": details.get("checked_at"),
            "run_id": run_id, "checks": checks}
