"""report.html: a run's report as one self-contained page (no script, no font, no request: it opens offline,
from a mail attachment or an incident ticket, as it is).

Sections: the overview (who ran it: the OS user and the operator), the outcome (status, what went wrong and what
to do next), what an incident commander pastes into a ticket (RTO and RPO achieved against the runbook's targets,
what served before and after), the published summary envelope, a timeline chart (one Gantt bar per step,
coloured by result, the point of no return marked) and the step table. The chart is hand-written SVG
(docs/reports.md says why: a few kilobytes, no dependency, readable as text and by tests). A
Content-Security-Policy of `default-src 'none'` makes the browser refuse any request the page might still try.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

from erlmcp_dr import bia
from erlmcp_dr.drill import report as drill_report
from erlmcp_dr.reporting import report
from erlmcp_dr.result import HTML_REPORT_FILE, RunResult, Step

COLOURS = {
    "ok": "#2e7d32", "changed": "#e69500", "skipped": "#9e9e9e", "ignored": "#8e6cc0",
    "failed": "#c62828", "unreachable": "#6d1b1b",
}
LABEL_WIDTH = 330
CHART_WIDTH = 620
ROW_HEIGHT = 20
AXIS_HEIGHT = 34
TOP_MARGIN = 26
MIN_BAR = 2.0  # px: a step quicker than a pixel still shows


@dataclass(frozen=True)
class Bar:
    step: Step
    start: float  # seconds from the run's start
    end: float

    @property
    def label(self) -> str:
        return f"{self.step.task} ({self.step.host})" if self.step.host else self.step.task


def write(result: RunResult, run_dir: Optional[Path] = None) -> Path:
    """Writes <run_dir>/report.html (0600, atomically) and returns its path."""
    from erlmcp_dr.paths import write_private_atomic

    path = Path(run_dir or result.run_dir) / HTML_REPORT_FILE
    write_private_atomic(path, render(result))
    return path


def render(result: RunResult) -> str:
    bars = timeline_bars(result)
    marker = point_of_no_return(result, bars)
    title = f"{result.title or result.runbook}: {report.status_word(result)}"
    body = [
        f"<h1>{_e(title)}</h1>",
        _overview(result),
        _outcome(result),
        _rto(result),
        _rpo(result),
        _served(result),
        _summary(result),
        drill_report.section(result),  # a drill's client timeline and verdict table (empty for other runbooks)
        "<h2>Timeline</h2>",
        timeline_svg(bars, marker, result),
        _legend(marker, result),
        _steps_table(result),
    ]
    return _PAGE.format(title=_e(title), style=_STYLE, body="\n".join(part for part in body if part))


# ---------------------------------------------------------------- the timeline


def timeline_bars(result: RunResult) -> List[Bar]:
    """One bar per step a person would read (internal plumbing left out unless it failed), in run order."""
    origin = _origin(result)
    bars = []
    for step in result.steps:
        if report.is_internal(step) and not step.failed:
            continue
        start, end = _when(step.start), _when(step.end)
        if start is None or origin is None:
            continue
        end = end if end is not None and end >= start else start
        bars.append(Bar(step, (start - origin).total_seconds(), (end - origin).total_seconds()))
    return bars


def point_of_no_return(result: RunResult, bars: Sequence[Bar]) -> Optional[Bar]:
    """The first step matching the runbook's marker (`runbook.point_of_no_return`: a task name, or its prefix, or an
    action) that did not fail before acting: where the run passed the point of no return. None when it did not get
    there, or when the runbook declares none (every step it takes can be undone)."""
    wanted = result.point_of_no_return
    if not wanted:
        return None
    for bar in bars:
        step = bar.step
        if step.skipped or (step.failed and not step.changed):
            continue
        if step.task == wanted or step.task.startswith(wanted) or step.action == wanted:
            return bar
    return None


def timeline_svg(bars: Sequence[Bar], marker: Optional[Bar], result: RunResult) -> str:
    if not bars:
        return '<p class="muted">No step ran, so there is no timeline.</p>'
    span = max(max(bar.end for bar in bars), result.duration_seconds or 0.0, 0.001)
    height = TOP_MARGIN + ROW_HEIGHT * len(bars) + AXIS_HEIGHT
    width = LABEL_WIDTH + CHART_WIDTH + 20
    scale = CHART_WIDTH / span
    parts = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="Timeline: one bar per step">']
    parts.extend(_grid(span, scale, height))
    for row, bar in enumerate(bars):
        parts.append(_bar(row, bar, scale, bar is marker))
    if marker is not None:
        x = LABEL_WIDTH + marker.start * scale
        parts.append(f'<line id="point-of-no-return" x1="{x:.1f}" y1="{TOP_MARGIN - 18}" x2="{x:.1f}" '
                     f'y2="{height - AXIS_HEIGHT}" stroke="#000" stroke-width="2" stroke-dasharray="6 3"/>')
        anchor = "end" if x > LABEL_WIDTH + CHART_WIDTH * 0.45 else "start"
        offset = -4 if anchor == "end" else 4
        parts.append(f'<text class="pnr" x="{x + offset:.1f}" y="{TOP_MARGIN - 8}" text-anchor="{anchor}">'
                     f'point of no return: {_e(_short(marker.step.task, 48))}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _grid(span: float, scale: float, height: float) -> List[str]:
    tick = _tick(span)
    parts = []
    value = 0.0
    base = height - AXIS_HEIGHT
    while value <= span + 1e-9:
        x = LABEL_WIDTH + value * scale
        parts.append(f'<line x1="{x:.1f}" y1="{TOP_MARGIN - 4}" x2="{x:.1f}" y2="{base:.1f}" stroke="#e0e0e0"/>')
        parts.append(f'<text class="axis" x="{x:.1f}" y="{base + 16:.1f}" text-anchor="middle">{value:g} s</text>')
        value += tick
    parts.append(f'<text class="axis" x="{LABEL_WIDTH + CHART_WIDTH / 2:.1f}" y="{base + 30:.1f}" '
                 'text-anchor="middle">seconds since the run started</text>')
    return parts


def _tick(span: float) -> float:
    for tick in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span / tick <= 10:
            return float(tick)
    return span / 10


def _bar(row: int, bar: Bar, scale: float, is_marker: bool) -> str:
    step = bar.step
    y = TOP_MARGIN + row * ROW_HEIGHT
    x = LABEL_WIDTH + bar.start * scale
    width = max((bar.end - bar.start) * scale, MIN_BAR)
    tip = f"{bar.label}: {step.status}, {_seconds(step.duration)}"
    if step.message:
        tip += f"\n{_short(step.message, 400)}"
    extra = ' stroke="#000" stroke-width="1.5"' if is_marker else ""
    return (f'<g class="row"><text class="label" x="{LABEL_WIDTH - 8}" y="{y + 14}" text-anchor="end">'
            f'{_e(_short(bar.label, 52))}</text>'
            f'<rect class="bar {step.status}" data-status="{step.status}" x="{x:.1f}" y="{y + 3}" '
            f'width="{width:.1f}" height="{ROW_HEIGHT - 6}" rx="2" fill="{COLOURS.get(step.status, "#607d8b")}"'
            f'{extra}><title>{_e(tip)}</title></rect></g>')


def _legend(marker: Optional[Bar], result: RunResult) -> str:
    seen = [status for status in COLOURS if any(step.status == status for step in result.steps)]
    items = [f'<span class="key"><span class="swatch" style="background:{COLOURS[status]}"></span>{status}</span>'
             for status in seen]
    if marker is not None:
        items.append(f'<span class="key"><span class="pnr-key"></span>point of no return: '
                     f'{_e(marker.step.task)} (at {marker.start:.1f} s)</span>')
    elif result.point_of_no_return:
        items.append(f'<span class="key muted">point of no return ({_e(result.point_of_no_return)}) not reached: '
                     "everything this run did can be undone by its rollback</span>")
    else:
        items.append('<span class="key muted">this runbook declares no point of no return</span>')
    hidden = sum(1 for step in result.steps if report.is_internal(step) and not step.failed)
    if hidden:
        items.append(f'<span class="key muted">{hidden} internal step(s) (parameter, inventory and argument '
                     "checks) not drawn; listed below</span>")
    return f'<p class="legend">{" ".join(items)}</p>'


# ---------------------------------------------------------------- the other sections


def _overview(result: RunResult) -> str:
    rows = [
        ("Status", f'<span class="badge {_e(_badge(result))}">{_e(result.status)}</span> (rc {_e(str(result.rc))})'),
        ("Runbook", _e(result.runbook)),
        ("Run", f"<code>{_e(result.run_id)}</code>"),
        ("Mode", "check (a plan: nothing was changed)" if result.check else "live (changes applied)"),
        ("Run by", _e(_who(result))),
        ("Started", _e(result.started_at)),
        ("Ended", _e(result.ended_at or "-")),
        ("Inventory", f"<code>{_e(result.inventory)}</code>"),
        ("Parameters", ", ".join(f"<code>{_e(key)}={_e(_inline(value))}</code>"
                                 for key, value in result.extravars.items()) or "none"),
        ("Run folder", f"<code>{_e(result.run_dir)}</code>"),
    ]
    return _table(rows, "overview")


def _outcome(result: RunResult) -> str:
    if result.succeeded:
        return ""
    lines = ['<section class="outcome"><h2>What went wrong</h2>']
    failing = result.failing_step
    if failing is not None:
        where = "unreachable" if failing.unreachable else "failed"
        lines.append(f"<p><b>{_e(failing.task)}</b> {where} on <code>{_e(failing.host)}</code>:</p>")
        lines.append(f"<pre>{_e(failing.message or '(no message)')}</pre>")
    elif result.error:
        lines.append(f"<pre>{_e(result.error)}</pre>")
    else:
        lines.append(f"<p>The run ended {_e(result.status)} before it finished.</p>")
    lines.append(f"<p><b>What to do next:</b> {_e(report.next_step(result))}</p></section>")
    return "\n".join(lines)


def _rto(result: RunResult) -> str:
    target = result.rto_target_seconds
    took = result.duration_seconds
    head = f"<h2>Recovery time</h2><p>{_e(report.duration_vs_target(result))}</p>"
    if target is None:
        return head + '<p class="muted">The runbook sets no RTO target (runbook.rto_seconds).</p>'
    full = max(took, target) * 1.1 or 1.0
    scale = 600 / full
    over = not bia.meets(took, target) and not result.check
    colour = "#c62828" if over else ("#9e9e9e" if result.check or not result.succeeded else "#2e7d32")
    x_target = 10 + target * scale
    return head + (
        '<svg id="rto" xmlns="http://www.w3.org/2000/svg" width="640" height="46" viewBox="0 0 640 46" role="img" '
        f'aria-label="RTO achieved {took:.1f} s against a target of {target} s">'
        f'<rect x="10" y="8" width="600" height="16" fill="#eeeeee"/>'
        f'<rect id="rto-achieved" x="10" y="8" width="{max(took * scale, 1):.1f}" height="16" fill="{colour}">'
        f'<title>achieved: {took:.1f} s</title></rect>'
        f'<line id="rto-target" x1="{x_target:.1f}" y1="2" x2="{x_target:.1f}" y2="30" stroke="#000" '
        'stroke-width="2"/>'
        f'<text class="axis" x="{x_target:.1f}" y="42" text-anchor="middle">target {target} s</text>'
        f'<text class="axis" x="12" y="42">achieved {took:.1f} s</text></svg>')


def _who(result: RunResult) -> str:
    """Who ran it: the OS account always (when recorded), and the operator named with --operator."""
    if result.os_user and result.operator:
        return f"{result.operator} (--operator), as OS user {result.os_user}"
    if result.os_user:
        return f"OS user {result.os_user} (no --operator given)"
    return result.operator or "-"


def _rpo(result: RunResult) -> str:
    """The recovery point the run achieved (the envelope's recovery_point) against the runbook's RPO target."""
    target = result.rpo_target_seconds
    point = result.summary.get("recovery_point")
    wanted = "no target set (runbook.rpo_seconds)" if target is None else f"target {target} s"
    head = "<h2>Recovery point</h2>"
    if not isinstance(point, dict):
        return head + f'<p id="rpo">This run gave up no data ({_e(wanted)}).</p>'
    parts = []
    if point.get("lost_bytes") is not None:
        parts.append(f"at most {point['lost_bytes']} bytes of WAL the old primary had and the new one had not "
                     "replayed")
    if point.get("lost_seconds") is not None:
        seconds = point["lost_seconds"]
        verdict = "" if target is None else (" - within the target" if seconds <= target else " - OVER the target")
        parts.append(f"the writes of the last {seconds} s (the backup's age){verdict}")
    return head + f'<p id="rpo">Data given up: {_e("; ".join(parts))} ({_e(wanted)}).</p>'


def _served(result: RunResult) -> str:
    """What served before the run and after it (the envelope's `served`), and whether it passed the point of no
    return: the lines an incident commander pastes into the ticket."""
    summary = result.summary
    served = summary.get("served")
    rows = []
    if isinstance(served, dict):
        rows.append(("Served before", _e(_inline(served.get("before")))))
        rows.append(("Served after", _e(_inline(served.get("after")))))
    if "point_of_no_return_passed" in summary:
        rows.append(("Point of no return", "passed" if summary["point_of_no_return_passed"] else "not passed"))
    return "<h2>Service</h2>" + _table(rows, "served") if rows else ""


def _summary(result: RunResult) -> str:
    summary = result.summary
    parts = []
    did = summary.get("did")
    if isinstance(did, list) and did:
        parts.append("<h2>What the run did</h2><ul>" + "".join(f"<li>{_e(str(item))}</li>" for item in did) + "</ul>")
    end = summary.get("end_state") if isinstance(summary.get("end_state"), dict) else {}
    lock = summary.get("lock") if isinstance(summary.get("lock"), dict) else {}
    envelope_rows = [("action", summary.get("action")), ("reason", summary.get("reason")),
                     ("completed", summary.get("completed")), ("end state ok", end.get("ok")),
                     ("end state problems", end.get("problems")), ("lock", lock.get("key")),
                     ("rollback", summary.get("rollback"))]
    details = {key: value for key, value in report.details_of(result.facts).items() if key != "did"}
    rows = [(_e(key), _e(_inline(value))) for key, value in envelope_rows + list(details.items())
            if value not in (None, "", [], {})]
    if rows:
        parts.append("<h2>Summary</h2>" + _table(rows, "summary"))
    others = {key: value for key, value in result.facts.items() if key != report.SUMMARY_FACT}
    for key, value in others.items():
        parts.append(f"<h2>{_e(key.replace('_', ' ').capitalize())}</h2><pre>"
                     f"{_e(json.dumps(value, indent=2, default=str))}</pre>")
    return "\n".join(parts)


def _steps_table(result: RunResult) -> str:
    if not result.steps:
        return ""
    rows = [f"<details><summary>All steps ({len(result.steps)})</summary>",
            '<table class="steps"><tr><th>#</th><th>Task</th><th>Host</th><th>Duration</th><th>Result</th>'
            "<th>Message</th></tr>"]
    for number, step in enumerate(result.steps, 1):
        rows.append(f'<tr class="{step.status}"><td>{number}</td><td>{_e(step.task)}</td><td>{_e(step.host)}</td>'
                    f"<td>{_seconds(step.duration)}</td><td>{step.status}</td>"
                    f"<td>{_e(_short(step.message, 300))}</td></tr>")
    rows.append("</table></details>")
    return "\n".join(rows)


# ---------------------------------------------------------------- helpers


def _origin(result: RunResult) -> Optional[dt.datetime]:
    starts = [when for when in (_when(step.start) for step in result.steps) if when is not None]
    run_start = _when(result.started_at)
    candidates = starts + ([run_start] if run_start is not None else [])
    return min(candidates) if candidates else None


def _when(value: Optional[str]) -> Optional[dt.datetime]:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _table(rows: Sequence[tuple], css: str) -> str:
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f'<table class="{css}">{body}</table>'


def _badge(result: RunResult) -> str:
    return "ok" if result.succeeded else "bad"


def _inline(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _short(text: str, limit: int) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1000px;
color:#212121;padding:0 12px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse}th,td{text-align:left;padding:3px 10px 3px 0;vertical-align:top}
table.steps td,table.steps th{border-bottom:1px solid #eee;padding:3px 8px}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}
.badge{padding:1px 8px;border-radius:9px;color:#fff}.badge.ok{background:#2e7d32}.badge.bad{background:#c62828}
.muted{color:#757575}.outcome{border-left:4px solid #c62828;padding-left:12px}
svg text{font:11px system-ui,sans-serif;fill:#333}svg text.pnr{font-weight:bold;fill:#000}
.legend .key{margin-right:14px;white-space:nowrap;display:inline-block}
.swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border-radius:2px}
.pnr-key{display:inline-block;width:0;height:12px;border-left:2px dashed #000;margin:0 6px -1px 4px}
tr.failed td{color:#c62828}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
<p class="muted">Written by erlmcp.dr (runbook report --html). Self-contained: it loads nothing.</p>
</body>
</html>
"""
