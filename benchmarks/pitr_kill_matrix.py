"""The in-place restore killed at every phase, then run again with the same target (issue 21, round 11): each case
must end with exactly the rows committed at or before the target, on a new timeline, the standbys streaming it.

Each case is a lab of its own (a copy of the template: pg-a primary, pg-b and pg-c streaming), a backup, a writer
logging each acknowledged insert with its commit time, and a target time between two commits. The runbook
`runbook run pg_restore_in_place --yes` runs cold (ERLMCP_DR_WARM=0: its whole process tree is below the CLI) and
is SIGKILLed, CLI and every descendant except the PostgreSQL servers (daemons of their own, as pg_ctl starts them;
a killed controller does not kill them) at one point:

  engine phases (the engine's phase hook, in_place.PHASE_HOOK_ENV: the run is held at the phase's entry, then
  killed): archive (switch WAL, wait archived), stop, restore (primary stopped, before pgBackRest), start,
  promotion (the node started, replaying to the target), tidy (promoted, its own settings not yet back);
  restore-pgbackrest: killed while pgBackRest runs (not held: the kill as soon as its process is seen);
  runbook phases (seen from outside): rewind (the engine's marker says promoted: the standbys' rejoin begins),
  verify (both standbys stream the new timeline: the end-state check runs).

Then the same command again (no hook), judged from outside: the primary's rows, its timeline, the standbys'.

    .venv/bin/python benchmarks/pitr_kill_matrix.py                  # every point
    .venv/bin/python benchmarks/pitr_kill_matrix.py --points stop,tidy

Writes benchmarks/results/<date>-pitr-kill-matrix.json after every case (finished false until the last).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from pitr_helpers import PRIMARY, row_ids, standbys_follow_with_the_rows, take_backup, write_rows  # noqa: E402
from regional_kill import killed_at_the_end, run_tree  # noqa: E402
from runbook_helpers import (  # noqa: E402
    CLI_HANG_GUARD,
    inventory_path,
    new_lab,
    node_state,
    runbook_cli,
    runbook_command,
    summary,
    topology,
    venv_path,
    wait_for,
)

from erlmcp_dr.lab import lifecycle as lab  # noqa: E402
from erlmcp_dr.paths import ensure_collection_importable  # noqa: E402

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import in_place  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROWS = 30
STANDBYS = ("pg-b", "pg-c")
HELD = ("archive", "stop", "restore", "start", "promotion", "tidy")  # held at the phase's entry by the hook
# A killed controller does not take down the servers pg_ctl started (daemons of their own): the kill spares them.
POSTGRES_SERVERS = ("postgres", "postmaster")
POINTS = ("archive", "stop", "restore", "restore-pgbackrest", "start", "promotion", "tidy", "rewind", "verify")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _state_or_none(cfg: lab.LabConfig, node: str) -> dict[str, Any] | None:
    try:
        state = node_state(cfg, node)
        return {"role": state["role"], "timeline": state["timeline"]}
    except Exception:  # noqa: BLE001 - a node that does not answer
        return None


def _reached(point: str, cfg: lab.LabConfig, proc: subprocess.Popen, hook: Path, marker: Path,
             before_timeline: int) -> Callable[[], bool]:
    phases = hook / "phases"

    def entered(name: str) -> bool:
        return phases.exists() and name in phases.read_text().split()

    if point in HELD:
        return lambda: entered(point)
    if point == "restore-pgbackrest":
        return lambda: entered("restore") and any("pgbackrest" in _cmdline(pid) and "restore" in _cmdline(pid)
                                                  for pid in run_tree(proc.pid)[1:])
    if point == "rewind":
        return lambda: marker.exists() and '"promoted"' in marker.read_text()

    def standbys_streaming_the_new_timeline() -> bool:
        try:
            seen = topology(cfg)
        except Exception:  # noqa: BLE001 - a status read while nodes restart: not yet
            return False
        return all(seen[name]["role"] == "standby" and seen[name]["upstream"] == PRIMARY
                   and int(seen[name]["timeline"] or 0) > before_timeline for name in STANDBYS)

    return standbys_streaming_the_new_timeline


def run_case(point: str) -> dict[str, Any]:
    with new_lab() as cfg, tempfile.TemporaryDirectory(prefix="pitr-kill-") as scratch:
        home, hook = Path(scratch) / "home", Path(scratch) / "hook"
        hook.mkdir()
        os.environ["ERLMCP_DR_HOME"] = str(home)
        try:
            backup = take_backup(cfg, verify=False)
            wait_for(lambda: time.time() >= float(backup["stopped_at"]) + 1, 5, interval=0.05,
                     what="the second after the backup's stop")
            writes = write_rows(cfg, ROWS)
            target = writes.committed[ROWS // 2][1] + (writes.committed[ROWS // 2 + 1][1] -
                                                       writes.committed[ROWS // 2][1]) / 2
            before = node_state(cfg, PRIMARY)
            marker = Path(in_place.marker_path(str(cfg.node(PRIMARY).data_dir)))
            args = ("run", "pg_restore_in_place", "-i", str(inventory_path(cfg)), "-e", "target_type=time",
                    "-e", f"target={target.isoformat()}", "--yes")
            if point in HELD:
                (hook / f"pause-{point}").write_text("")
            env = dict(os.environ, PATH=venv_path(), ERLMCP_DR_WARM="0", **{in_place.PHASE_HOOK_ENV: str(hook)})
            began = time.monotonic()
            victim = subprocess.Popen([*runbook_command(), *args, "--json"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                      start_new_session=True)
            with killed_at_the_end(victim, spare=POSTGRES_SERVERS) as killed:
                reached = _reached(point, cfg, victim, hook, marker, int(before["timeline"]))
                wait_for(lambda: victim.poll() is not None or reached(), CLI_HANG_GUARD, interval=0.02,
                         what=f"the restore in place at {point}")
                ended_before_kill = victim.poll() is not None
            (hook / f"pause-{point}").unlink(missing_ok=True)
            killed_after = round(time.monotonic() - began, 3)
            at_kill = {"marker_state": json.loads(marker.read_text()).get("state") if marker.exists() else None,
                       "phases_entered": (hook / "phases").read_text().split() if (hook / "phases").exists() else [],
                       "nodes": {name: _state_or_none(cfg, name) for name in (PRIMARY, *STANDBYS)}}
            began = time.monotonic()
            rerun = runbook_cli(*args, "--json")
            rerun_wall = round(time.monotonic() - began, 3)
            found = summary(json.loads(rerun.stdout)) if rerun.stdout.strip().startswith("{") else {}
            restored = found.get("in_place") or {}
            expected = writes.at_or_before(target)
            new_timeline = restored.get("new_timeline") or (_state_or_none(cfg, PRIMARY) or {}).get("timeline")
            standbys_ok = True
            try:
                standbys_follow_with_the_rows(cfg, STANDBYS, new_timeline, expected, new_id=ROWS + 1)
            except Exception as exc:  # noqa: BLE001 - recorded: the case failed
                standbys_ok = f"{type(exc).__name__}: {exc}"
            primary_ids = row_ids(cfg, PRIMARY) - {ROWS + 1}
            case = {
                "point": point, "killed_after_seconds": killed_after, "ended_before_kill": ended_before_kill,
                "killed_processes": sorted(set(killed.values())), "at_kill": at_kill, "rerun_rc": rerun.rc,
                "rerun_wall": rerun_wall, "rerun_action": restored.get("action"),
                "rerun_completed": found.get("completed"), "rerun_end_state_ok": (found.get("end_state") or {}).get(
                    "ok"), "from_timeline": before["timeline"], "new_timeline": new_timeline,
                "expected_rows": len(expected), "primary_rows": len(primary_ids),
                "missing": sorted(expected - primary_ids), "extra": sorted(primary_ids - expected),
                "standbys_streaming_with_the_rows": standbys_ok is True,
                "standbys_error": None if standbys_ok is True else standbys_ok,
                "rerun_stderr": rerun.stderr[-2000:] if rerun.rc else "",
            }
            case["ok"] = bool(not ended_before_kill and rerun.rc == 0 and case["rerun_end_state_ok"]
                              and not case["missing"] and not case["extra"] and new_timeline
                              and int(new_timeline) > int(before["timeline"]) and standbys_ok is True)
            return case
        finally:
            os.environ.pop("ERLMCP_DR_HOME", None)


def write_result(cases: list[dict[str, Any]], points: list[str], finished: bool, began: float) -> Path:
    result = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "points": points, "finished": finished, "cases": len(cases), "ok": sum(1 for c in cases if c["ok"]),
        "failed": [c["point"] for c in cases if not c["ok"]], "wall_seconds": round(time.monotonic() - began, 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "note": "a shared 2-core machine with other jobs running; walls are not claims",
        "rows": cases,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{result['date']}-pitr-kill-matrix.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default=",".join(POINTS), help="comma-separated, of: " + ", ".join(POINTS))
    args = parser.parse_args()
    points = [p for p in args.points.split(",") if p]
    unknown = sorted(set(points) - set(POINTS))
    if unknown:
        parser.error(f"--points: unknown {', '.join(unknown)}; expected some of {', '.join(POINTS)}")
    began, cases = time.monotonic(), []
    for point in points:
        case = run_case(point)
        cases.append(case)
        print(json.dumps({k: case[k] for k in ("point", "ok", "rerun_action", "rerun_rc", "new_timeline",
                                                "missing", "extra", "standbys_streaming_with_the_rows")}), flush=True)
        path = write_result(cases, points, finished=False, began=began)
    path = write_result(cases, points, finished=True, began=began)
    print(f"wrote {path}")
    return 0 if all(c["ok"] for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
