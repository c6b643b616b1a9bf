"""`runbook watch`: run one observer of the automatic regional failover trigger (docs/watch.md).

    runbook watch -i inventories/prod --name obs-a            # a long-running service (docs/watch.md: systemd unit)
    runbook watch -i inventories/prod --name witness --json   # one JSON report per check on stdout
    runbook watch -i inventories/prod --clear-failover a      # after the failback: region a may be triggered again

Exit codes: 0 stopped (SIGTERM, SIGINT, or --checks made); 2 bad settings (naming the variable); 1 etcd could
not be reached for --clear-failover.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict

EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2


def register(sub: Any, make_sub: Callable[..., argparse.ArgumentParser]) -> None:
    """Adds the `watch` command to the `runbook` parser (cli.build_parser's hook)."""
    parser = make_sub(sub, "watch", "an observer of the automatic regional failover: samples the regions, publishes "
                      "its verdicts in etcd, starts regional_failover when a majority of the static observers agree",
                      command)
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("-i", "--inventory", metavar="INV",
                        help="inventory with dr_watch and dr_lock_etcd_endpoints (default: the local lab's)")
    parser.add_argument("--name", metavar="OBSERVER", help="this observer's name in dr_watch.observers")
    parser.add_argument("--checks", type=int, metavar="N", help="stop after N checks (default: run until stopped)")
    parser.add_argument("--clear-failover", metavar="REGION",
                        help="remove REGION's trigger record (after the failback), then exit")
    parser.add_argument("--json", action="store_true", help="one JSON report per check on stdout")


def command(args: argparse.Namespace) -> int:
    from erlmcp_dr import runner
    from erlmcp_dr.errors import ParameterError
    from erlmcp_dr.watch import board as board_module
    from erlmcp_dr.watch import settings as settings_module
    from erlmcp_dr.watch.observer import Observer

    try:
        inventory = runner.resolve_inventory(args.inventory)
        settings = settings_module.parse(settings_module.inventory_variables(Path(inventory)))
        if args.clear_failover:
            board = board_module.Board(settings.etcd, settings.prefix, args.name or "operator", settings.lease_seconds)
            try:
                cleared = board.clear(args.clear_failover)
            except board_module.store_error() as exc:
                print(f"runbook watch: error: {exc}", file=sys.stderr)
                return EXIT_UNAVAILABLE
            print(f"region {args.clear_failover}: trigger record {'removed' if cleared else 'absent'}")
            return EXIT_OK
        if not args.name:
            raise ParameterError("--name", "--name is missing: expected this observer's name, one of "
                                           f"{', '.join(settings.membership.observers)} (dr_watch.observers)")
        observer = Observer(settings, args.name, Path(inventory))
    except ParameterError as exc:
        print(f"runbook watch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    observer.watch(stop, lambda report: _print(report, args.json), ticks=args.checks)
    return EXIT_OK


def _print(report: Dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True, default=str), flush=True)
        return
    print(text(report), flush=True)


def text(report: Dict[str, Any]) -> str:
    """One line per watched region: what this observer saw, the quorum's decision, and the trigger."""
    head = f"{report['at']} {report['observer']}"
    guard = report.get("guard") or {}
    lines = [f"{head} write guard: {guard['action']}: {guard['reason']}"] if guard.get("action") == "fence" else []
    if report.get("status") != "ok":
        return "\n".join([f"{head} {report.get('message')}", *lines])
    for region, found in sorted(report["regions"].items()):
        seen = f"failed {found['consecutive']} check(s)" if found["failed"] else f"healthy {found['consecutive']}"
        line = f"{head} region {region}: {seen} -> {found.get('decision')}: {found.get('reason')}"
        if found.get("trigger"):
            line += f"; trigger: {found['trigger']}"
        lines.append(line)
    return "\n".join(lines)
