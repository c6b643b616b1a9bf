"""The whole kill matrix of regional_failover (issues 17, 18): for every step boundary of the regional failover in
one mode (derived from its workflow: before each of that mode's steps, and the end), on a fresh copy of one lab
template: (unplanned) region a killed first, or (planned) both regions answering; the move started and stopped at
that boundary, its whole run tree killed with SIGKILL, then the same command again. Records the end state judged
from outside (tests/integration/regional_kill.py: a serving with everything undone, or b serving) and prints the
table boundary -> end state. CI runs one unplanned case of it (tests/integration/test_regional_kill.py); the
journal and resume it exercises are the same in both modes, so CI runs no planned boundary.

    .venv/bin/python benchmarks/regional_kill_matrix.py                 # every unplanned boundary
    .venv/bin/python benchmarks/regional_kill_matrix.py --mode planned  # every planned boundary
    .venv/bin/python benchmarks/regional_kill_matrix.py --only redis dns
    .venv/bin/python benchmarks/regional_kill_matrix.py --only inside:database --out ...   # killed mid-step

Result: benchmarks/results/<date>-regional-kill-matrix.json (planned: <date>-regional-kill-matrix-planned.json),
rewritten after every case (`not_run` lists the boundaries still to come, so a matrix stopped early keeps its cases).
Measured, never asserted; exits 1 when a case ended in neither verified state.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from regional_kill import MOVES, boundaries, kill_case  # noqa: E402
from runbook_helpers import TEMPLATE, lab_inventory, new_lab  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="these boundaries only (default: every one)")
    parser.add_argument("--mode", choices=sorted(MOVES), default="unplanned",
                        help="the move's mode (default: unplanned)")
    parser.add_argument("--out", type=Path, help="the result file (default benchmarks/results/<date>-regional-kill-"
                                                 "matrix[-planned].json)")
    args = parser.parse_args()
    suffix = "" if args.mode == "unplanned" else f"-{args.mode}"
    out = args.out or RESULTS / f"{datetime.date.today().isoformat()}-regional-kill-matrix{suffix}.json"
    chosen = args.only or boundaries(args.mode)
    cases: list = []
    try:
        for boundary in chosen:
            with tempfile.TemporaryDirectory(prefix="erlmcp-dr-kill-home-") as home:
                os.environ["ERLMCP_DR_HOME"] = home  # run folders and journals of this case only
                started = time.monotonic()
                with new_lab(app=True, dns=True) as cfg:
                    case = kill_case(cfg, lab_inventory(cfg), boundary, args.mode)
                case["seconds"] = round(time.monotonic() - started, 1)
            case["load_average"] = os.getloadavg()  # the machine is shared: each case's load, beside the run's
            cases.append(case)
            print(f"{boundary:>10} -> {case['end']['verified_state']} (re-run rc {case['rerun_rc']}, "
                  f"{case['rerun_status']}, {case['seconds']} s)", flush=True)
            result = write_result(out, args.mode, chosen, cases)  # after each case: a long matrix stopped keeps them
    finally:
        TEMPLATE.remove()
    result = write_result(out, args.mode, chosen, cases)
    print(json.dumps({key: result[key] for key in ("verified", "cases_run", "table")}, indent=2))
    return 0 if result["verified"] == len(cases) == len(chosen) else 1


def write_result(out: Path, mode: str, chosen: list, cases: list) -> dict:
    verified = sum(1 for case in cases if case["end"]["verified_state"])
    result = {"benchmark": "regional-kill-matrix", "mode": mode,
              "date": datetime.datetime.now(datetime.UTC).isoformat(),
              "cpus": os.cpu_count(), "load_average": os.getloadavg(), "boundaries": chosen,
              "verified": verified, "cases_run": len(cases), "verified_ratio": verified / len(cases) if cases else 0,
              "not_run": [boundary for boundary in chosen if boundary not in {case["boundary"] for case in cases}],
              "table": {case["boundary"]: case["end"]["verified_state"] for case in cases}, "cases": cases}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(main())
