"""The drill's section of report.html (html_report.render's hook): the client-observed timeline (successes and
failures per quarter second, the fault and the first success marked) and the verdict table."""

from __future__ import annotations

from html import escape
from typing import Any, Dict, List, Mapping, Optional

WIDTH, HALF = 760.0, 60.0  # the chart's width, and the height of each half (successes up, failures down)


def section(result: Any) -> str:
    if getattr(result, "runbook", None) != "dr_drill":
        return ""
    details = (result.summary or {}).get("details") or {}
    measured = details.get("measured") or {}
    parts = [f"<h2>Drill: {escape(str(details.get('kind')))}, {escape(str(details.get('verdict')))}</h2>",
             f"<p>{escape(str(details.get('verdict_reason') or ''))}. Client: {escape(str(details.get('public_name')))}"
             f"; steady state restored: {escape(str(details.get('restored')))}.</p>"]
    if measured.get("timeline"):
        parts.append("<h3>What the client saw</h3>")
        parts.append(timeline_svg(measured["timeline"], measured))
    parts.append(verdict_table(details.get("criteria") or []))
    return "\n".join(parts)


def timeline_svg(buckets: List[Mapping[str, Any]], measured: Mapping[str, Any]) -> str:
    span = max(float(b["t"]) for b in buckets) + 0.25
    peak = max(max(int(b["ok"]), int(b["failed"])) for b in buckets) or 1
    x_of = lambda t: 40 + (WIDTH - 50) * float(t) / span  # noqa: E731 - one scale for bars and markers
    width = max(1.0, (WIDTH - 50) * 0.25 / span - 1)
    bars = []
    for b in buckets:
        up, down = HALF * int(b["ok"]) / peak, HALF * int(b["failed"]) / peak
        x = x_of(b["t"])
        if up:
            bars.append(f'<rect x="{x:.1f}" y="{10 + HALF - up:.1f}" width="{width:.1f}" height="{up:.1f}" '
                        f'fill="#2e7d32"><title>{b["t"]} s: {b["ok"]} ok</title></rect>')
        if down:
            bars.append(f'<rect x="{x:.1f}" y="{10 + HALF:.1f}" width="{width:.1f}" height="{down:.1f}" '
                        f'fill="#c62828"><title>{b["t"]} s: {b["failed"]} failed</title></rect>')
    marks = []
    for key, label, colour in (("fault_at", "fault", "#000"), ("first_success", "back", "#1565c0"),
                               ("recovered_at", "runbook done", "#6a1b9a")):
        t: Optional[float] = measured.get(key)
        if t is not None:
            marks.append(f'<line x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="4" y2="{20 + 2 * HALF:.1f}" '
                         f'stroke="{colour}" stroke-dasharray="3,2"/><text x="{x_of(t) + 2:.1f}" y="12" '
                         f'font-size="10" fill="{colour}">{escape(label)} {t:g} s</text>')
    axis = (f'<line x1="40" x2="{WIDTH - 10}" y1="{10 + HALF}" y2="{10 + HALF}" stroke="#999"/>'
            f'<text x="2" y="{14 + HALF / 2:.0f}" font-size="10">ok</text>'
            f'<text x="2" y="{14 + 1.5 * HALF:.0f}" font-size="10">failed</text>'
            f'<text x="{WIDTH - 60}" y="{28 + 2 * HALF:.0f}" font-size="10">{span:.1f} s</text>')
    rto = measured.get("rto_seconds")
    caption = (f"RTO {rto:g} s (±{measured.get('resolution_seconds')} s), RPO {measured.get('rpo_seconds')} s, "
               f"{measured.get('lost_writes_count')} of {measured.get('acknowledged_writes')} acknowledged writes "
               f"lost, {measured.get('sessions_lost')} sessions lost" if rto is not None else "the service never "
               "came back while the client watched")
    return (f'<svg class="drill" width="{WIDTH:.0f}" height="{40 + 2 * HALF:.0f}" role="img" '
            f'aria-label="client timeline">{axis}{"".join(bars)}{"".join(marks)}</svg>'
            f"<p>{escape(caption)}</p>")


def verdict_table(criteria: List[Dict[str, Any]]) -> str:
    if not criteria:
        return "<p>No criterion was measured (the fault was not injected).</p>"
    rows = "".join(
        f"<tr><td>{escape(str(c['name']))}</td><td>{escape(str(c['target']))}</td>"
        f"<td>{escape(str(c['measured']))}</td><td class=\"{'ok' if c['verdict'] == 'pass' else 'failed'}\">"
        f"{escape(str(c['verdict']))}</td><td>{escape(str(c['source']))}</td><td>{escape(str(c.get('detail')))}"
        f"</td></tr>" for c in criteria)
    return ("<h3>Verdict per criterion</h3><table><tr><th>criterion</th><th>target</th><th>measured</th>"
            f"<th>verdict</th><th>target's source</th><th>detail</th></tr>{rows}</table>")
