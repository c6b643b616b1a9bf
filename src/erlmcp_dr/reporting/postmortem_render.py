"""The postmortem draft as Markdown or as one self-contained HTML page in report.html's style.

`sections(draft)` lays the draft out once as blocks (headings, paragraphs, tables, lists, TODOs), each fact with
its citation; `markdown()` and `html()` only print those blocks, so both formats say exactly the same thing. The
HTML page reuses html_report's escaping, style sheet and page (no script, no request). Every string is scrubbed of
the draft's secrets before it is printed (postmortem.scrub), and the whole output once more at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

from erlmcp_dr.reporting import html_report
from erlmcp_dr.reporting.postmortem import (
    TODO,
    Citation,
    Draft,
    Fact,
    RunRecord,
    client_observed,
    notifications,
    objectives,
    scrub,
    timeline,
    utc_time,
    what_changed,
    what_failed,
)

Cell = Union[str, Fact]


@dataclass
class Block:
    kind: str  # heading, paragraph, table, list, todo
    text: str = ""
    level: int = 2
    cite: Optional[Citation] = None
    header: Sequence[str] = ()
    rows: List[Sequence[Cell]] = field(default_factory=list)
    items: List[Fact] = field(default_factory=list)


def heading(text: str, level: int = 2) -> Block:
    return Block("heading", text, level)


def para(text: str, cite: Optional[Citation] = None) -> Block:
    return Block("paragraph", text, cite=cite)


def todo(text: str) -> Block:
    return Block("todo", f"{TODO}: {text}")


def table(header: Sequence[str], rows: List[Sequence[Cell]]) -> Block:
    return Block("table", header=header, rows=rows)


def bullets(items: List[Fact], empty: str) -> Block:
    return Block("list", items=items) if items else para(empty)


# ---------------------------------------------------------------- the draft's layout (one for both formats)


def sections(draft: Draft) -> List[Block]:
    root = draft.root
    result = root.result
    title = result.title or result.runbook
    blocks = [heading(f"Postmortem (draft): {title}, run {result.run_id}", 1), *_header(draft),
              heading("Summary"), *_summary(root),
              todo("two or three sentences on what happened to users and why; the recorded data says what the runs "
                   "did, not why they were needed"),
              heading("Impact"), _impact(root),
              heading("Recovery objectives"), *_objectives(root),
              heading("Timeline (UTC, in recorded order)"),
              para("Sorted by the audit trail's sequence number and, between two records, the order ansible-runner "
                   "recorded the steps: a monotonic clock; the wall-clock times are shown as recorded."),
              _milestones(root), _timeline(root),
              heading("What the runs did"), *_did(root),
              heading("Notifications sent"),
              bullets(notifications(root), "No notification was recorded by these runs."),
              heading("What went wrong (recorded facts)"), *_failures(root),
              *_children(root),
              *_unknowns(),
              heading("Sources"), *_sources(draft)]
    return blocks


def _header(draft: Draft) -> List[Block]:
    root = draft.root
    result = root.result
    incident = next((fact for fact in notifications(root) if " notice for " in fact.text), None)
    incident_cell: Cell = TODO + ": the incident id (no notification of these runs named one)"
    if incident is not None:
        incident_cell = Fact(incident.text.split(" notice for ", 1)[1].split(" (", 1)[0], incident.cite)
    publish_by = draft.publish_by()
    rows: List[Sequence[Cell]] = [
        ("Status", "Draft (a draft written from recorded data; a person reviews and publishes it)"),
        ("Incident", incident_cell),
        ("Date", Fact(utc_time(root.start.get("time")) + " UTC", root.cite_start())),
        ("Runbook", Fact(f"{result.runbook} ({'plan: check mode' if result.check else 'live run'})",
                         root.cite_start())),
        ("Run by", Fact(_run_by(root), root.cite_start())),
        ("Outcome", Fact(f"{result.status} (rc {result.rc})", root.cite_end())),
        ("Authors", f"{TODO}: who writes this postmortem"),
        ("Reviewers", f"{TODO}: who reviews it"),
        ("Publish by", Fact(f"{publish_by or TODO} ({draft.publish_hours:g} h after the run ended; from "
                            f"{draft.publish_source})", root.cite_end())),
    ]
    return [table(("Field", "Value"), rows)]


def _run_by(run: RunRecord) -> str:
    actor = run.start.get("who") or {}
    user = actor.get("user") or "?"
    if actor.get("operator"):
        return f"{actor['operator']} (--operator), as OS user {user} on {actor.get('host') or '?'}"
    return f"OS user {user} on {actor.get('host') or '?'} (no --operator given)"


def _summary(run: RunRecord) -> List[Block]:
    result = run.result
    children = f", through {len(run.children)} child run(s)" if run.children else ""
    text = (f"{result.title or result.runbook} ({result.runbook}) ran from {utc_time(run.start.get('time'))} to "
            f"{utc_time(run.end.get('time'))} UTC{children} and ended {result.status} after "
            f"{result.duration_seconds:.1f} s.")
    blocks = [para(text, run.cite_end())]
    reason = result.summary.get("reason")
    if result.summary.get("action") or reason:
        blocks.append(para(f"Its plan decided: {result.summary.get('action') or '-'}; {reason or '-'}.",
                           run.cite_result()))
    return blocks


def _impact(run: RunRecord) -> Block:
    rto, rpo = objectives(run)
    hosts = sorted({str(host) for each in run.walk() for host in each.end.get("targets") or []})
    rows: List[Sequence[Cell]] = [
        ("Duration of the recovery", Fact(rto.achieved_text, rto.cite)),
        ("Data lost", Fact(rpo.achieved_text, rpo.cite)),
        ("Hosts changed", Fact(", ".join(hosts) or "none", run.cite_end())),
        ("Users affected", f"{TODO}: share of users affected (not recorded)"),
        ("Revenue impact", f"{TODO}: cost of the outage (the BIA's revenue_per_hour times the outage, once the "
                           "outage's start is known)"),
        ("Services affected", f"{TODO}: the business services (runbook bia lists them), beyond the hosts above"),
        ("Outage start", f"{TODO}: when users were first affected (before this run; not recorded)"),
    ]
    return table(("Impact", "Value"), rows)


def _objectives(root: RunRecord) -> List[Block]:
    rows: List[Sequence[Cell]] = []
    for run in root.walk():
        who = ("" if run is root else f"{run.label}: ") + run.result.runbook
        for objective in objectives(run):
            runbook_target = "-" if objective.runbook_target is None else f"{objective.runbook_target:g} s"
            rows.append((who, objective.name, Fact(objective.achieved_text, objective.cite), runbook_target,
                         f"{objective.tier_target:g} s (tier {run.tier['tier']})", objective.verdict))
    blocks = [table(("Run", "Objective", "Achieved", "Runbook target", "Tier target", "Verdict vs tier"), rows)]
    blocks.extend(para(f"{'' if run is root else run.label + ': '}tier from {run.tier_source}: RTO "
                       f"{run.tier['rto_seconds']:g} s, RPO {run.tier['rpo_seconds']:g} s ({run.tier['source']}); a "
                       "value equal to its limit meets it.") for run in root.walk())
    for run in root.walk():
        observed = client_observed(run)
        if observed:
            shown = ", ".join(f"{key} {value}" for key, value in sorted(observed.items()))
            blocks.append(para(f"Seen by a client (the probe of {run.result.runbook}): {shown}.", run.cite_result()))
    return blocks


def _milestones(root: RunRecord) -> Block:
    result = root.result
    summary = result.summary
    end_state = summary.get("end_state") if isinstance(summary.get("end_state"), dict) else {}
    passed, passed_by = _point_of_no_return(root)
    verified = end_state.get("ok")
    rows: List[Sequence[Cell]] = [
        ("Detection", f"{TODO}: when and how the problem was noticed (before this run; not recorded)"),
        ("Investigation", f"{TODO}: what was looked at before deciding to run {result.runbook}"),
        ("Mitigation started", Fact(utc_time(root.start.get("time")), root.cite_start())),
        ("Point of no return", Fact(f"passed by {_name(passed_by)}" if passed_by else "not passed",
                                    (passed_by or root).cite_result()) if passed is not None else "-"),
        ("Resolution", Fact(_resolution(root), root.cite_end())),
        ("Verification", Fact({True: "end state verified", False: "end state NOT verified",
                               None: "no end state checked"}[verified if isinstance(verified, bool) else None],
                              root.cite_result())),
    ]
    return table(("Milestone", "When / what"), rows)


def _name(run: RunRecord) -> str:
    return f"{run.label}: {run.result.runbook}" if run.label else run.result.runbook


def _point_of_no_return(root: RunRecord) -> Tuple[Optional[bool], Optional[RunRecord]]:
    """Whether the run, or one of its children, passed its point of no return (the envelope's
    point_of_no_return_passed), and the first that did; None when no run says either way."""
    said = [run for run in root.walk() if isinstance(run.result.summary.get("point_of_no_return_passed"), bool)]
    passed = next((run for run in said if run.result.summary["point_of_no_return_passed"]), None)
    return (passed is not None if said else None), passed


def _resolution(run: RunRecord) -> str:
    result = run.result
    if result.check:
        return "none: a plan (check mode) changes nothing"
    if result.succeeded:
        return f"{utc_time(run.end.get('time'))} (the run ended successful)"
    return f"not resolved by this run (it ended {result.status})"


def _timeline(root: RunRecord) -> Block:
    rows: List[Sequence[Cell]] = []
    for number, entry in enumerate(timeline(root), 1):
        prefix = "\u21b3 " * entry.depth
        note = f" ({entry.clock_note})" if entry.clock_note else ""
        rows.append((str(number), utc_time(entry.when), Fact(prefix + entry.text + note, entry.cite)))
    return table(("#", "Time (UTC)", "What happened"), rows)


def _did(root: RunRecord) -> List[Block]:
    blocks = []
    for run in root.walk():
        name = run.result.runbook if run is root else f"{run.label}: {run.result.runbook}"
        blocks.append(para(f"{name} (run {run.run_id}):"))
        blocks.append(bullets(what_changed(run), "nothing recorded"))
    return blocks


def _failures(root: RunRecord) -> List[Block]:
    blocks = []
    for run in root.walk():
        facts = what_failed(run)
        if facts:
            name = run.result.runbook if run is root else f"{run.label}: {run.result.runbook}"
            blocks.extend([para(f"{name} (run {run.run_id}) ended {run.result.status}:"), bullets(facts, "")])
    return blocks or [para("No run failed.")]


def _children(root: RunRecord) -> List[Block]:
    runs = [run for run in root.walk() if run is not root]
    missing = [(run, child) for run in root.walk() for child in run.missing_children]
    if not runs and not missing:
        return []
    rows: List[Sequence[Cell]] = [
        (run.label, run.result.runbook, run.run_id, Fact(f"{run.result.status} in {run.result.duration_seconds:.1f} s",
                                                        run.cite_end())) for run in runs]
    rows.extend((f"listed by {parent.run_id}", "?", child, "MISSING: no run folder with a result.json; this draft "
                 "is incomplete without it") for parent, child in missing)
    return [heading("Child runs"), table(("Step", "Runbook", "Run", "Outcome"), rows)]


def _unknowns() -> List[Block]:
    """What the recorded data cannot know: left for people, never guessed."""
    return [
        heading("Root cause"), todo("the root cause; the recorded data shows what failed, not why"),
        heading("Trigger"), todo("what set the incident off"),
        heading("Detection"), todo("how it was detected, and how it could be detected sooner"),
        heading("Resolution"), todo("how service was restored, in words (the timeline lists what the runs did)"),
        heading("What went well"), todo("what helped"),
        heading("What went wrong"), todo("what hindered (the recorded failures are above)"),
        heading("Action items"),
        table(("Action", "Owner", "Priority (P0-P3)", "Due date", "Status"),
              [(f"{TODO}: action", f"{TODO}: owner", f"{TODO}: priority", f"{TODO}: due date", f"{TODO}: status")]),
        heading("Lessons learned"), todo("what we learned"),
        heading("Related incidents"), todo("links to related incidents"),
    ]


def _sources(draft: Draft) -> List[Block]:
    head = draft.trail_head
    blocks = [para(f"Each [#seq hash] is the audit record a fact came from (`runbook audit show`); [result.json @ "
                   "#seq hash] is a fact read from the run folder's result.json, which that record (the run's "
                   "run_end) anchors: its audit_head, status, rc, duration and failing step were checked against "
                   f"it. The audit trail's chain was verified: {draft.trail_records} records, head #{head.get('seq')} "
                   f"{str(head.get('hash'))[:12]}.")]
    blocks.extend(para(f"Not checked: {limit}") for limit in draft.trail_limits)
    rows: List[Sequence[Cell]] = []
    for run in draft.root.walk():
        for record in [run.start, *run.step_records, run.end]:
            rows.append((f"#{record.get('seq')}", str(record.get("kind")), str(record.get("run_id")),
                         utc_time(record.get("time")), f"`{record.get('hash')}`"))
    blocks.append(table(("Record", "Kind", "Run", "Time (UTC)", "Hash"), rows))
    return blocks


# ---------------------------------------------------------------- Markdown


def markdown(draft: Draft) -> str:
    parts = [_md(block, draft.secrets) for block in sections(draft)]
    return scrub("\n\n".join(part for part in parts if part) + "\n", draft.secrets)


def _md(block: Block, secrets: Sequence[str]) -> str:
    if block.kind == "heading":
        return "#" * block.level + " " + scrub(block.text, secrets)
    if block.kind == "paragraph":
        return scrub(block.text, secrets) + _md_cite(block.cite)
    if block.kind == "todo":
        return f"**{scrub(block.text, secrets)}**"
    if block.kind == "list":
        return "\n".join(f"- {scrub(item.text, secrets)}{_md_cite(item.cite)}" for item in block.items)
    lines = ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
    lines.extend("| " + " | ".join(_md_cell(cell, secrets) for cell in row) + " |" for row in block.rows)
    return "\n".join(lines)


def _md_cell(cell: Cell, secrets: Sequence[str]) -> str:
    text, cite = (cell.text, cell.cite) if isinstance(cell, Fact) else (cell, None)
    shown = scrub(text, secrets).replace("|", "\\|").replace("\n", " ")
    if shown.startswith(TODO):
        shown = f"**{shown}**"
    return shown + _md_cite(cite)


def _md_cite(cite: Optional[Citation]) -> str:
    return f" [{cite.label()}]" if cite is not None else ""


# ---------------------------------------------------------------- HTML

_EXTRA_STYLE = """
.cite{color:#757575;font-size:11.5px;white-space:nowrap}.todo{background:#fff3cd;padding:2px 6px;font-weight:bold}
table.pm td,table.pm th{border-bottom:1px solid #eee;padding:3px 8px}.draft{color:#c62828}
"""


def html(draft: Draft) -> str:
    blocks = sections(draft)
    title = scrub(blocks[0].text, draft.secrets)
    body = "\n".join(_html(block, draft.secrets) for block in blocks)
    page = html_report._PAGE.replace("(runbook report --html)", "(runbook postmortem --format html)")
    return scrub(page.format(title=html_report._e(title), style=html_report._STYLE + _EXTRA_STYLE, body=body),
                 _html_forms(draft.secrets))


def _html_forms(secrets: Sequence[str]) -> List[str]:
    """Each secret as written and as html-escaped (the page escapes what it prints)."""
    return sorted({form for secret in secrets for form in (secret, html_report._e(secret))},
                  key=lambda value: (-len(value), value))


def _html(block: Block, secrets: Sequence[str]) -> str:
    e = html_report._e
    if block.kind == "heading":
        return f"<h{block.level}>{e(scrub(block.text, secrets))}</h{block.level}>"
    if block.kind == "paragraph":
        return f"<p>{e(scrub(block.text, secrets))}{_html_cite(block.cite)}</p>"
    if block.kind == "todo":
        return f'<p class="todo">{e(scrub(block.text, secrets))}</p>'
    if block.kind == "list":
        items = "".join(f"<li>{e(scrub(item.text, secrets))}{_html_cite(item.cite)}</li>" for item in block.items)
        return f"<ul>{items}</ul>"
    header = "".join(f"<th>{e(name)}</th>" for name in block.header)
    rows = "".join("<tr>" + "".join(_html_cell(cell, secrets) for cell in row) + "</tr>" for row in block.rows)
    return f'<table class="pm"><tr>{header}</tr>{rows}</table>'


def _html_cell(cell: Cell, secrets: Sequence[str]) -> str:
    text, cite = (cell.text, cell.cite) if isinstance(cell, Fact) else (cell, None)
    shown = scrub(text, secrets)
    css = ' class="todo"' if shown.startswith(TODO) else ""
    code = shown.startswith("`") and shown.endswith("`")
    inner = f"<code>{html_report._e(shown.strip('`'))}</code>" if code else html_report._e(shown)
    return f"<td{css}>{inner}{_html_cite(cite)}</td>"


def _html_cite(cite: Optional[Citation]) -> str:
    return f' <span class="cite">[{html_report._e(cite.label())}]</span>' if cite is not None else ""


def render(draft: Draft, form: str) -> str:
    """`form`: md or html."""
    return html(draft) if form == "html" else markdown(draft)


__all__: Tuple[str, ...] = ("render", "markdown", "html", "sections")
