"""The kill matrix of failback (issue 18): for every step boundary of failback (from its workflow: before each step,
and the end) and inside its two long steps (the rejoin, the database handover), on a fresh copy of one lab
template: region a killed, `regional_failover` a -> b, region a restarted, then `failback` b -> a stopped at that
boundary, its whole run tree killed with SIGKILL, then the same command again (and, if that run stops, the resume
command it prints). Records the end state judged from outside (tests/integration/failback_kill.py: region a serving
with every database and Redis member rejoined) and prints the table boundary -> end state. CI runs one case of it
(tests/integration/test_failback_kill.py). The mechanism is regional_failover's (regional_kill_matrix.py).

    .venv/bin/python benchmarks/failback_kill_matrix.py                       # every boundary
    .venv/bin/python benchmarks/failback_kill_matrix.py --only inside:database app
    .venv/bin/python benchmarks/failback_kill_matrix.py --only inside:database:fenced-not-promoted \
        inside:rejoin:pg_rewind --out benchmarks/results/<date>-failback-kill-matrix-inside.json

Beside the boundaries, two kills at a chosen moment inside a step (tests/integration/failback_kill.py): between the
fence of pg-b and the promotion of pg-a (inside:database:fenced-not-promoted), and while pg_rewind runs
(inside:rejoin:pg_rewind).

Result: benchmarks/results/<date>-failback-kill-matrix.json, rewritten after each case (a matrix cut short still
leaves the cases it ran). Measured, never asserted; exits 1 when a case ended in another state.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from failback_kill import boundaries, kill_case  # noqa: E402
from runbook_helpers import TEMPLATE, lab_inventory, new_lab  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def write(out: Path, chosen: list[str], cases: list[dict[str, Any]]) -> dict[str, Any]:
    verified = sum(1 for case in cases if case["end"]["verified_state"])
    result = {"benchmark": "failback-kill-matrix", "date": datetime.datetime.now(datetime.UTC).isoformat(),
              "cpus": os.cpu_count(), "load_average": os.getloadavg(), "boundaries": chosen,
              "verified": verified, "cases_run": len(cases), "verified_ratio": verified / len(cases) if cases else 0,
              "table": {case["boundary"]: case["end"]["verified_state"] for case in cases}, "cases": cases}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="these boundaries only, in this order (default: every one)")
    parser.add_argument("--out", type=Path,
                        default=RESULTS / f"{datetime.date.today().isoformat()}-failback-kill-matrix.json")
    args = parser.parse_args()
    chosen = args.only or boundaries()
    cases: list[dict[str, Any]] = []
    try:
        for boundary in chosen:
            with tempfile.TemporaryDirectory(prefix="erlmcp-dr-failback-kill-home-") as home:
                os.environ["ERLMCP_DR_HOME"] = home  # run folders, journals and grace history of this case only
                started = time.monotonic()
                with new_lab(app=True, dns=True) as cfg:
                    try:
                        case = kill_case(cfg, lab_inventory(cfg), boundary)
                    except Exception as exc:  # a case that could not be set up or judged is recorded, not fatal
                        case = {"boundary": boundary, "error": f"{type(exc).__name__}: {exc}"[:3000],
                                "end": {"verified_state": None}}
                case["seconds"] = round(time.monotonic() - started, 1)
            cases.append(case)
            write(args.out, chosen, cases)
            print(f"{boundary:>16} -> {case['end']['verified_state']} (re-run rc {case.get('rerun_rc')}, "
                  f"{case.get('rerun_status')}, finished with {case.get('finished_with')}, {case['seconds']} s)",
                  flush=True)
    finally:
        TEMPLATE.remove()
    result = write(args.out, chosen, cases)
    print(json.dumps({key: result[key] for key in ("verified", "cases_run", "table")}, indent=2))
    return 0 if result["verified"] == len(cases) == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
