"""`runbook`: list, inspect, plan and run the erlmcp.dr runbooks; read their reports; drive the local lab."""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from erlmcp_dr import catalog, docs, params, paths, readiness_cli
from erlmcp_dr.catalog import ParameterView, Runbook
from erlmcp_dr.drill import cli as drill_cli
from erlmcp_dr.errors import ConfirmationRequired, RunbookError, RunBusy
from erlmcp_dr.reporting import report
from erlmcp_dr.result import HTML_REPORT_FILE, REPORT_FILE, RESULT_FILE, RunResult, Step
from erlmcp_dr.watch import cli as watch_cli

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 3

PROG = "runbook"
DESCRIPTION = """\
Runs the erlmcp.dr disaster-recovery runbooks (the playbooks of the erlmcp.dr Ansible
collection) through ansible-runner, with a plan first, a confirmation gate, live
progress and a report in a run folder."""
EPILOG = """\
examples:
  runbook list
  runbook show database_failover
  runbook plan database_failover -i inventories/prod
  runbook run database_failover -i inventories/prod -e away_from=pg-a
  runbook report latest
  runbook report latest --html
  runbook audit show --since 24h --runbook database_failover
  runbook audit verify
  runbook postmortem latest --format html --output pm.html
  runbook bia -i inventories/prod
  runbook compliance --since 2026-01-01
  runbook readiness -i inventories/prod --json
  runbook lab up

exit codes:
  0  success            1  the runbook failed (or drift/lab trouble)
  2  usage, unknown runbook, bad parameter or a --limit that skips the controller play: nothing ran
  3  another run holds the run lock (the playbook's erlmcp.dr.run_lock): nothing changed
  (audit verify, postmortem, compliance: 1 when the audit trail was tampered with)

environment:
  ERLMCP_DR_HOME       where run folders (runs/), running runs' extra vars (private/) and the audit
                       trail (audit/audit.jsonl) live
                       (default: a checkout's .runs/, else ~/.local/state/erlmcp-dr)
  ERLMCP_DR_PLAYBOOKS  read runbooks from this folder instead of <collection>/playbooks
  ERLMCP_DR_COLLECTION the erlmcp.dr collection root (default: this checkout, else the one
                       Ansible finds on its collections path, e.g. installed by pip)
  ERLMCP_DR_LOCK_DIR   where the run lock's records live (default: ~/.local/state/erlmcp-dr/locks)
  ERLMCP_DR_LAB_DIR, ERLMCP_DR_LAB_PORT_BASE   where the local lab lives, and its first port
  NO_COLOR             set (non-empty): no colour on a terminal"""


class CliError(Exception):
    """A usage problem found by the CLI itself: exit 2."""


# ---------------------------------------------------------------- parser


# A parser the CLI zygote built before it served (warm/zygote.py): building one is about 4 ms of every command
# (argparse's 90 subparsers and their translated texts); each served command is a fork, and uses its copy once.
_PREBUILT: List[argparse.ArgumentParser] = []


def prebuild_parser() -> None:
    _PREBUILT[:] = [build_parser()]


def _parser() -> argparse.ArgumentParser:
    return _PREBUILT.pop() if _PREBUILT else build_parser()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--playbooks-dir", metavar="DIR",
                        help="read runbooks from DIR instead of the collection's playbooks/ ($ERLMCP_DR_PLAYBOOKS)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    listing = _sub(sub, "list", "list the runbooks", _cmd_list)
    _json_flag(listing)

    show = _sub(sub, "show", "a runbook's metadata, parameters, targets and steps", _cmd_show)
    show.add_argument("name", metavar="NAME", help="runbook name (see `runbook list`)")
    _json_flag(show)

    plan = _sub(sub, "plan", "run a runbook in check mode: what it would change, changing nothing", _cmd_plan)
    _run_arguments(plan)

    run = _sub(sub, "run", "run a runbook (asks for confirmation when the runbook requires it)", _cmd_run)
    _run_arguments(run)
    run.add_argument("-y", "--yes", action="store_true",
                     help="confirm in advance (needed without a terminal when the runbook requires confirmation)")

    rep = _sub(sub, "report", "print a run's report (report.md), or its result.json with --json", _cmd_report)
    rep.add_argument("run_id", metavar="RUN_ID", help="a run id (as printed by run/plan), or 'latest'")
    form = rep.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print result.json instead of report.md")
    form.add_argument("--html", action="store_true",
                      help="print the path of the run's report.html (a self-contained page: open it in a browser)")

    aud = _sub(sub, "audit", "the audit trail: who ran what, when, what it changed (hash-chained JSONL)", _cmd_audit)
    aud_sub = aud.add_subparsers(dest="audit_action", metavar="ACTION", required=True)
    verify = aud_sub.add_parser("verify", help="check the hash chain: exit 1 naming each edited, deleted, "
                                               "inserted or moved record")
    _json_flag(verify)
    show_audit = aud_sub.add_parser("show", help="print audit records, filtered")
    show_audit.add_argument("--since", metavar="WHEN", help="from this time: ISO 8601 (UTC unless a zone is given) "
                                                            "or a span back from now (30m, 12h, 7d)")
    show_audit.add_argument("--until", metavar="WHEN", help="up to this time (same forms as --since)")
    show_audit.add_argument("--runbook", metavar="NAME", help="records of this runbook only")
    show_audit.add_argument("--target", metavar="HOST",
                            help="the steps that changed HOST, with the start and end of their runs")
    _json_flag(show_audit, "the records as a JSON list")

    _reporting_commands(sub)

    survey = _sub(sub, "survey", "the AWX job template survey spec (JSON) derived from a runbook's parameters",
                  _cmd_survey)
    survey.add_argument("name", metavar="NAME", help="runbook name (see `runbook list`)")

    doc = _sub(sub, "docs", "write the runbooks/*.md pages from the playbooks, or check them for drift", _cmd_docs)
    doc.add_argument("--check", action="store_true", help="write nothing; exit 1 listing drifted/missing/extra pages")
    doc.add_argument("--out", metavar="DIR", help="pages folder (default: <collection>/runbooks)")

    readiness_cli.register(sub, _sub)  # `runbook readiness`: its own exit codes (0 ready, 1 warnings, 2 not ready)
    drill_cli.register(sub, _sub)  # `runbook drill export`: a drill as a Chaos Toolkit experiment and journal
    watch_cli.register(sub, _sub)  # `runbook watch`: an observer of the automatic regional failover (issue 22)

    lab = _sub(sub, "lab", "the local lab: PostgreSQL primary + standbys on 127.0.0.1", _cmd_lab)
    lab.add_argument("action", choices=["up", "status", "down", "reset", "fail-region", "restore-region"],
                     help="up: create/start; status: show; down: stop; reset: back to a fresh lab; fail-region R: "
                          "kill -9 region R's PostgreSQL, Redis and app; restore-region R: start them again")
    lab.add_argument("region", nargs="?", metavar="REGION", help="the region for fail-region / restore-region")
    lab.add_argument("--etcd", action="store_true", help="with up: also start three etcd members (one per region); "
                     "the lab's inventory then keeps the run lock in them (dr_lock_store: etcd)")
    _json_flag(lab)

    warm = _sub(sub, "warm", "the warm start's zygotes (ERLMCP_DR_WARM_DIR): list them, or stop them", _cmd_warm)
    warm.add_argument("action", choices=["status", "stop"], help="status: list; stop: stop every zygote (runs they "
                                                                   "serve go on; the next run starts a fresh one)")
    _json_flag(warm)
    return parser


def _reporting_commands(sub: Any) -> None:
    """postmortem, bia, compliance: read what runs recorded and the inventory's BIA data; change nothing."""
    post = _sub(sub, "postmortem", "a postmortem draft of a run, from its recorded data (offline, every fact cited)",
                _cmd_postmortem)
    post.add_argument("run_id", metavar="RUN_ID", help="a run id (as printed by run/plan), or 'latest'")
    post.add_argument("--format", choices=["md", "html"], default="md", help="Markdown (default) or one HTML page")
    post.add_argument("-o", "--output", metavar="FILE", help="write the draft to FILE (0600) instead of stdout")
    post.add_argument("-i", "--inventory", metavar="INV",
                      help="inventory to read dr_postmortem_publish_hours and secrets to scrub from (default: none)")
    bia_cmd = _sub(sub, "bia", "the business impact analysis table of an inventory's dr_services", _cmd_bia)
    bia_cmd.add_argument("-i", "--inventory", metavar="INV", help="inventory (default: the local lab's)")
    _json_flag(bia_cmd)
    comp = _sub(sub, "compliance", "runs, drills, RTO/RPO achieved per tier per quarter, from the audit trail",
                _cmd_compliance)
    comp.add_argument("--since", metavar="WHEN", help="runs started from this time: ISO 8601 or a span (90d)")
    _json_flag(comp)


def _sub(sub: Any, name: str, help_text: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
    parser.set_defaults(handler=handler)
    return parser


def _json_flag(parser: argparse.ArgumentParser, help_text: str = "machine-readable JSON on stdout") -> None:
    parser.add_argument("--json", action="store_true", help=help_text)


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="runbook name (see `runbook list`)")
    parser.add_argument("-i", "--inventory", metavar="INV",
                        help="inventory file or folder (default: the local lab: a checkout's inventories/lab, else the "
                             "inventory `runbook lab up` wrote)")
    parser.add_argument("-e", "--extra-vars", metavar="VARS", action="append", default=[],
                        help="a parameter: key=value (one per -e), @file.yml|json, or a JSON object; repeatable, "
                             "later wins. See `runbook show NAME` for the parameters")
    parser.add_argument("-l", "--limit", metavar="PATTERN",
                        help="limit the run to these hosts (ansible --limit); it must keep the runbook's first play "
                             "(localhost), which drives every step")
    parser.add_argument("--no-diff", action="store_true", help="do not ask modules for diffs")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="ansible verbosity (-v, -vv, ...)")
    parser.add_argument("--run-id", metavar="ID", help="use this run id instead of a generated one")
    parser.add_argument("--operator", metavar="NAME",
                        help="who runs it, recorded in the audit trail beside the OS user (e.g. your name or ticket)")
    _json_flag(parser, "print the run's result as JSON on stdout instead of the summary")


# ---------------------------------------------------------------- entry point


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`runbook ...`: returns the exit code. As the `runbook` command itself (argv None), a finished run or plan
    ends its process at once (exit_now): its results are written, closed and fsync'd by then."""
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(levelname)s: %(message)s", stream=sys.stderr)
    args = _parser().parse_args(argv)
    from erlmcp_dr import audit

    audit.set_entry_point("cli")  # the runs this process starts are recorded as entered through the CLI
    code = _dispatch(args)
    if argv is None and args.handler in (_cmd_run, _cmd_plan):
        exit_now(code)
    return code


def exit_now(code: int) -> None:
    """Ends the process with `code` after what an orderly exit does that matters (stdout and stderr flushed, the
    atexit handlers: logging's flush, ansible-runner's temp folder cleanup) without the interpreter's teardown of
    every module (about 30 ms after a run, more under load). Not when a non-daemon thread still runs: then the
    usual exit waits for it."""
    if any(not thread.daemon for thread in threading.enumerate() if thread is not threading.main_thread()):
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what Python's own exit would also fail to write
            code = code or 120
    atexit._run_exitfuncs()
    os._exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return args.handler(args)
    except RunBusy as exc:
        _error(str(exc))
        return EXIT_BUSY
    except (RunbookError, CliError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except FileNotFoundError as exc:  # e.g. no collection found
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# ---------------------------------------------------------------- list / show


def _cmd_list(args: argparse.Namespace) -> int:
    runbooks = catalog.discover(args.playbooks_dir)
    if args.json:
        _emit_json([_summary_dict(runbook) for runbook in runbooks.values()])
        return EXIT_OK
    if not runbooks:
        print(f"no runbooks in {catalog.playbooks_dir(args.playbooks_dir)}")
        return EXIT_OK
    rows = [("NAME", "TIER", "RTO", "RPO", "CONFIRM", "TITLE")]
    rows.extend((rb.name, _dash(rb.tier), _secs(rb.rto_seconds), _secs(rb.rpo_seconds),
                 "yes" if rb.confirm else "no", rb.title) for rb in runbooks.values())
    print(_table(rows))
    return EXIT_OK


def _summary_dict(runbook: Runbook) -> Dict[str, Any]:
    return {key: value for key, value in runbook.to_dict().items() if key not in ("steps", "parameters")} | {
        "parameters": sorted(runbook.parameters)}


def _cmd_show(args: argparse.Namespace) -> int:
    runbook = catalog.load(args.name, args.playbooks_dir)
    if args.json:
        _emit_json(runbook.to_dict())
        return EXIT_OK
    print(render_show(runbook))
    return EXIT_OK


def render_show(runbook: Runbook) -> str:
    lines = [f"{runbook.name}: {runbook.title}"]
    if runbook.summary:
        lines.extend(textwrap.wrap(runbook.summary, 88, initial_indent="  ", subsequent_indent="  "))
    lines.append("")
    confirm = "required" if runbook.confirm else "not required"
    lines.append(f"tier {_dash(runbook.tier)}, RTO target {_secs(runbook.rto_seconds)}, "
                 f"RPO target {_secs(runbook.rpo_seconds)}, confirmation {confirm}")
    lines.append(f"targets: {', '.join(runbook.targets) or '-'}")
    lines.append(f"playbook: {runbook.path}")
    lines.append("")
    lines.append("parameters:")
    if not runbook.parameters:
        lines.append("  none")
    rows = [("  NAME", "TYPE", "REQUIRED", "DEFAULT")]
    views = runbook.parameter_views()
    for view in views:
        rows.append((f"  {view.name}", view.type_label, "yes" if view.required else "no", _default(view)))
    if runbook.parameters:
        table = _table(rows).splitlines()
        lines.append(table[0])
        for row, view in zip(table[1:], views, strict=True):
            lines.append(row)
            lines.extend(textwrap.wrap(_choices_and_description(view), 88, initial_indent="      ",
                                       subsequent_indent="      "))
    lines.append("")
    lines.append("steps:")
    lines.extend(f"  {step.indented()}" for step in runbook.steps)
    return "\n".join(lines)


# ---------------------------------------------------------------- plan / run


def _cmd_plan(args: argparse.Namespace) -> int:
    return _execute(args, check=True)


def _cmd_run(args: argparse.Namespace) -> int:
    return _execute(args, check=False)


def _execute(args: argparse.Namespace, check: bool) -> int:
    from erlmcp_dr.runner import RunConfig

    runbook = catalog.load(args.name, args.playbooks_dir)
    extravars = params.parse_extra_vars(args.extra_vars, runbook, base_dir=Path.cwd())
    if runbook.name == "dr_drill" and not check:  # the drill runs in this process (erlmcp_dr/drill/cli.py)
        return drill_cli.execute(args, runbook, extravars, _confirm, _interactive, ConfirmationRequired)
    if runbook.workflow is not None and not check:  # a composed runbook's run: its steps are child runs (its plan
        # is its playbook's, in check mode: parameters and regions checked, steps named)
        from erlmcp_dr.compose import cli_run

        cli_run.check_before_asking(args, runbook)
        if runbook.confirm and not args.yes:
            if not _interactive():
                raise ConfirmationRequired(runbook.name, str(args.inventory or "the default inventory"))
            print(cli_run.steps_text(runbook), file=sys.stderr)
            _confirm(runbook, str(args.inventory or "the default inventory"))
        return EXIT_OK if cli_run.execute(args, runbook, extravars) else EXIT_FAILED
    options = dict(inventory=args.inventory, extravars=extravars, diff=not args.no_diff, limit=args.limit,
                   verbosity=args.verbose, playbooks_dir=args.playbooks_dir, operator=args.operator)
    config = RunConfig.prepare(runbook, check=check, run_id=args.run_id, **options)
    on_tty = _is_tty(sys.stderr)
    if not check and runbook.confirm and not args.yes:
        if not _interactive():
            raise ConfirmationRequired(runbook.name, str(config.inventory))
        guard: Dict[str, Any] = {}
        if on_tty:  # the plan first: what will change, from a check-mode run, before the question
            from erlmcp_dr import terminal

            plan = _run(RunConfig.prepare(runbook, check=True, **options), on_tty, quiet=True)
            print(terminal.render_plan(plan, str(config.inventory), terminal.Style(terminal.colour_wanted(sys.stderr))),
                  file=sys.stderr)
            if not plan.succeeded:
                raise CliError(f"the plan failed (see above and `runbook report {plan.run_id}`): nothing was run. "
                               "Fix the cause, or run with --yes to skip the plan and the question")
            guard = confirmed_guard(plan, runbook)
        _confirm(runbook, str(config.inventory), show_summary=not on_tty)
        if guard:  # what the operator said yes to is what the run guards on, not a fresh read after the answer
            options["extravars"] = {**extravars, **guard}
            config = RunConfig.prepare(runbook, check=False, run_id=config.run_id, **options)
    mode = "plan (check mode: nothing will change)" if check else "run"
    print(f"{PROG}: {mode} {runbook.name} against {config.inventory} - run {config.run_id}", file=sys.stderr)
    result = _run(config, on_tty)
    if args.json:
        print(result.to_json())
    elif _is_tty(sys.stdout):
        from erlmcp_dr import terminal

        print(terminal.render_summary(result, terminal.Style(terminal.colour_wanted(sys.stdout))))
    else:
        print(report.render_terminal(result))
    return EXIT_OK if result.succeeded else EXIT_FAILED


def confirmed_guard(plan: RunResult, runbook: Runbook) -> Dict[str, Any]:
    """The parameters a runbook's plan asks the confirmed run to guard on: its summary's `plan.confirm_guard`, a
    mapping of parameter name to value (dns_cutover: confirmed_values, each record's values as the plan saw
    them). Only the runbook's declared parameters are taken, so a plan can narrow its run but never set
    anything else; the run validates them like any -e value."""
    guard = (report.summary_of(plan.facts).get("plan") or {}).get("confirm_guard")
    if not isinstance(guard, dict):
        return {}
    return {name: value for name, value in guard.items() if name in runbook.parameters}


def _run(config: Any, on_tty: bool, quiet: bool = False) -> RunResult:
    """Runs a prepared config: on a terminal with the live display (`quiet`: the running step only), else with
    one plain line per step on stderr."""
    from erlmcp_dr.runner import RunbookRun

    if not on_tty:
        return RunbookRun(config, event_callback=_progress).run()
    from erlmcp_dr import terminal  # only on a terminal: piped runs do not pay for it

    progress = terminal.Progress(sys.stderr, show_steps=not quiet, label="planning:" if quiet else "")
    try:
        return RunbookRun(config, event_callback=progress.finished, start_callback=progress.started).run()
    finally:
        progress.close()


def _confirm(runbook: Runbook, inventory: str, show_summary: bool = True) -> None:
    if not _interactive():
        raise ConfirmationRequired(runbook.name, inventory)
    if show_summary:
        print(f"{runbook.title}: {runbook.summary}" if runbook.summary else runbook.title, file=sys.stderr)
    print(f"Run {runbook.name} against {inventory}? type 'yes' to continue: ", end="", file=sys.stderr, flush=True)
    try:
        answer = input()
    except EOFError:
        answer = ""
    if answer.strip().lower() != "yes":
        raise CliError(f"not confirmed (got {answer.strip()!r}, expected 'yes'): nothing was run")


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def _interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _progress(step: Step) -> None:
    print(report.step_line(step), file=sys.stderr, flush=True)


# ---------------------------------------------------------------- report / docs


def _cmd_report(args: argparse.Namespace) -> int:
    from erlmcp_dr.runner import remove_stale_private_dirs

    remove_stale_private_dirs()  # closes killed runs' folders (secrets a task leaked scrubbed) before showing one
    run_dir = _find_run(args.run_id)
    if args.html:
        print(_html_report(run_dir))
        return EXIT_OK
    name = RESULT_FILE if args.json else REPORT_FILE
    if not args.json and (run_dir / REPORT_FILE).is_file():
        print((run_dir / REPORT_FILE).read_text(encoding="utf-8"), end="")
        return EXIT_OK
    # report.md lost: drawn again from result.json; without a readable result.json (still running, killed, a full
    # disk), from what the folder holds, saying what is missing
    found = report.result_or_remains(run_dir)
    if found is None:
        raise CliError(f"run {run_dir.name} has no {name} (still running, or it could not start); see {run_dir}")
    print(found.to_json() if args.json else report.render_markdown(found), end="\n" if args.json else "")
    return EXIT_OK


def _html_report(run_dir: Path) -> Path:
    """<run_dir>/report.html, written from result.json (or what a killed or running run left) when missing."""
    from erlmcp_dr.reporting import html_report

    path = run_dir / HTML_REPORT_FILE
    if path.is_file():
        return path
    unfinished = report.result_or_remains(run_dir)
    if unfinished is None:
        raise CliError(f"run {run_dir.name} has no {RESULT_FILE} to draw a report from (it could not start); "
                       f"see {run_dir}")
    return html_report.write(unfinished, run_dir)


# ---------------------------------------------------------------- audit


def _cmd_audit(args: argparse.Namespace) -> int:
    from erlmcp_dr import audit

    path = audit.audit_path()
    if args.audit_action == "verify":
        try:
            checked = audit.full_check(path)
        except audit.AuditKeyError as exc:
            raise CliError(str(exc)) from exc
        problems, count = checked["problems"], checked["records"]
        if args.json:
            _emit_json(checked)
        elif problems:
            print(f"audit trail {path}: {len(problems)} problem(s) in {count} record(s):")
            print("\n".join(f"  {problem}" for problem in problems))
        else:
            head = checked["head"]
            against = f"{checked['anchors']} anchor(s)" + (", MACs checked" if checked["keyed"] else "")
            print(f"audit trail {path}: {count} record(s), chain intact; head #{head['seq']} {head['hash']} "
                  f"(checked against {against})")
        for limit in [] if args.json else checked["limits"]:
            print(f"  not checked: {limit}")
        return EXIT_FAILED if problems else EXIT_OK
    try:
        since = audit.parse_time(args.since) if args.since else None
        until = audit.parse_time(args.until) if args.until else None
    except ValueError as exc:
        raise CliError(f"{exc}; see `runbook audit show --help`") from exc
    chosen = audit.select(audit.records(path), since=since, until=until, runbook=args.runbook, target=args.target)
    if args.json:
        _emit_json(chosen)
    elif chosen:
        print("\n".join(audit.render_line(record) for record in chosen))
    else:
        print(f"no audit records match in {path}")
    return EXIT_OK


def _find_run(run_id: str) -> Path:
    runs = paths.state_home() / "runs"
    if run_id == "latest":
        candidates = sorted((d for d in runs.glob("*") if d.is_dir()), key=lambda d: d.stat().st_mtime)
        if not candidates:
            raise CliError(f"no runs yet in {runs}")
        return candidates[-1]
    run_dir = runs / run_id
    if "/" in run_id or not run_dir.is_dir():
        recent = sorted((d.name for d in runs.glob("*") if d.is_dir()), reverse=True)[:5]
        listing = ", ".join(recent) if recent else "none"
        raise CliError(f"no run '{run_id}' in {runs}; recent runs: {listing}")
    return run_dir


def _cmd_postmortem(args: argparse.Namespace) -> int:
    from erlmcp_dr.reporting import postmortem, postmortem_render

    run_dir = _find_run(args.run_id)
    inventory = Path(args.inventory) if args.inventory else None
    try:
        draft = postmortem.build(run_dir.name, inventory=inventory)
    except postmortem.PostmortemRefused as exc:
        _error(f"no postmortem draft for {run_dir.name}: {exc}")
        return EXIT_FAILED
    text = postmortem_render.render(draft, args.format)
    if args.output:
        paths.write_private_atomic(Path(args.output), text)
        print(f"wrote {args.output} (status Draft: complete its TODOs, then publish it by {draft.publish_by()})")
    else:
        print(text, end="")
    return EXIT_OK


def _cmd_bia(args: argparse.Namespace) -> int:
    from erlmcp_dr import bia

    inventory = Path(args.inventory) if args.inventory else paths.default_inventory()
    try:
        table = bia.table_for(bia.inventory_vars(inventory))
    except bia.BiaError as exc:
        raise CliError(f"{exc} (inventory {inventory})") from exc
    if args.json:
        _emit_json(table)
    else:
        print(bia.render(table))
    return EXIT_OK


def _cmd_compliance(args: argparse.Namespace) -> int:
    from erlmcp_dr import audit
    from erlmcp_dr.reporting import compliance

    try:
        since = audit.parse_time(args.since) if args.since else None
    except ValueError as exc:
        raise CliError(f"{exc}; see `runbook compliance --help`") from exc
    try:
        summary = compliance.summarize(since)
    except compliance.ComplianceError as exc:
        _error(str(exc))
        return EXIT_FAILED
    if args.json:
        _emit_json(summary)
    else:
        print(compliance.render(summary))
    return EXIT_OK


def _cmd_survey(args: argparse.Namespace) -> int:
    from erlmcp_dr import awx

    print(json.dumps(awx.survey_spec(catalog.load(args.name, args.playbooks_dir)), indent=2))
    return EXIT_OK


def _cmd_docs(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else docs.default_out_dir()
    if args.check:
        problems = docs.check_pages(out, args.playbooks_dir)
        if problems:
            print("runbook pages differ from the playbooks (run `runbook docs` to regenerate):")
            print("\n".join(f"  {problem}" for problem in problems))
            return EXIT_FAILED
        print(f"runbook pages in {out} match the playbooks")
        return EXIT_OK
    touched = docs.write_pages(out, args.playbooks_dir)
    print("\n".join(f"wrote {path}" if path.exists() else f"removed {path}" for path in touched)
          or f"runbook pages in {out} already up to date")
    return EXIT_OK


# ---------------------------------------------------------------- lab


def _cmd_lab(args: argparse.Namespace) -> int:
    try:
        from erlmcp_dr.lab import lifecycle as lab
    except ImportError as exc:
        raise CliError(f"the local lab is not available in this installation: {exc}") from exc
    try:
        cfg = lab.LabConfig.from_env()
        if args.action in ("fail-region", "restore-region"):
            from erlmcp_dr.lab import regions as lab_regions

            outcome = getattr(lab_regions, args.action.replace("-", "_"))(cfg, args.region)
            print(json.dumps(outcome, indent=2) if args.json else lab_regions.format_outcome(outcome))
            return EXIT_OK
        outcome = lab.up(cfg, etcd=True) if args.action == "up" and args.etcd else getattr(lab, args.action)(cfg)
    except RunbookError:
        raise
    except Exception as exc:  # the lab reports its own trouble; no traceback for a person at a terminal
        _error(f"lab {args.action} failed: {exc}")
        return EXIT_FAILED
    if args.json:
        _emit_json(outcome)
    else:
        print(lab.format_status(outcome))
    return EXIT_FAILED if isinstance(outcome, dict) and outcome.get("ok") is False else EXIT_OK


def _cmd_warm(args: argparse.Namespace) -> int:
    from erlmcp_dr.warm import client

    found = client.zygotes()
    if args.action == "stop":
        for zygote in found:
            zygote["stopped"] = client.stop(zygote["socket"])
    if args.json:
        _emit_json(found)
    elif not found:
        print(f"no zygote in {client.wire.default_dir()}")
    else:
        rows = [["PID", "KIND", "ALIVE", "FILES", "SOCKET"] + (["STOPPED"] if args.action == "stop" else [])]
        rows += [[str(z["pid"]), z["kind"], "yes" if z["alive"] else "no", str(z["files"]), z["socket"]]
                 + (["yes" if z.get("stopped") else "no"] if args.action == "stop" else []) for z in found]
        print(_table(rows))
    return EXIT_OK


# ---------------------------------------------------------------- helpers


def _table(rows: List[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _default(view: ParameterView) -> str:
    if view.default is None:
        return "-"
    if view.secret:
        return "(hidden)"
    value = view.default
    return json.dumps(value) if not isinstance(value, str) or value == "" else value


def _choices_and_description(view: ParameterView) -> str:
    text = view.description
    if view.choices:
        text = f"one of {', '.join(map(str, view.choices))}. {text}".strip()
    elif view.minimum is not None or view.maximum is not None:
        text = f"{_dash(view.minimum)} to {_dash(view.maximum)}. {text}".strip()
    return text


def _secs(value: Optional[int]) -> str:
    return "-" if value is None else f"{value}s"


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)
