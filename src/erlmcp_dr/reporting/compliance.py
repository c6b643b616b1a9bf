"""`runbook compliance`: what the run history proves, per quarter and tier, from the audit trail.

Each run is a run_start/run_end pair of the trail (a run without its end is counted as unfinished). Per quarter
(of the run's start, UTC) and per tier (the runbook's `runbook.tier`, else the `details.tier` of a composed run's
anchored summary, else none):
live runs, plans, drills (a runbook whose name holds "drill", or a run started with drill=true), succeeded and
failed runs, the RTO achieved (the run's duration, live runs that succeeded) against the tier's limit, the RPO
achieved (the summary's recovery_point in the run's result.json, only when that result.json is anchored by the
run's run_end record) against the tier's limit, and the degradation levels the runs recorded
(`details.degradation`: a level, or {available_nodes, error_rate, replication_lag_ms}; bia.degradation_level).
A tampered trail is refused like the postmortem draft refuses it: the history is only as good as its chain.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from erlmcp_dr import audit, bia, paths
from erlmcp_dr.reporting.postmortem import PostmortemRefused, checked_trail
from erlmcp_dr.result import RESULT_FILE

UNTIERED = "none"


@dataclass
class Row:
    quarter: str
    tier: str
    live_runs: int = 0
    plans: int = 0
    drills: int = 0
    succeeded: int = 0
    failed: int = 0
    unfinished: int = 0
    rto_measured: int = 0
    rto_met: int = 0
    rto_worst_seconds: Optional[float] = None
    rpo_measured: int = 0
    rpo_met: int = 0
    rpo_worst_seconds: Optional[float] = None
    rto_limit_seconds: Optional[float] = None
    rpo_limit_seconds: Optional[float] = None
    degradation: Dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


class ComplianceError(PostmortemRefused):
    """The history cannot be summarised: a tampered trail, a bad --since."""


def summarize(since: Optional[dt.datetime] = None, home: Optional[Path] = None,
              tiers: Optional[Mapping[str, Optional[int]]] = None) -> Dict[str, Any]:
    """{trail, since, rows}: one row per (quarter, tier) with runs in it, oldest quarter first, tiers in order.
    `tiers` maps runbook names to tiers (default: the catalog's)."""
    home = home or paths.state_home()
    trail = home / audit.AUDIT_DIR / audit.AUDIT_FILE
    try:
        checked = checked_trail(trail)
    except PostmortemRefused as exc:
        raise ComplianceError(str(exc)) from exc
    tiers = dict(tiers) if tiers is not None else _catalog_tiers()
    starts, ends = _runs(audit.records(trail))
    rows: Dict[Tuple[str, str], Row] = {}
    for run_id, start in starts.items():
        when = _time(start)
        if when is None or (since is not None and when < since):
            continue
        runbook = str(start.get("runbook") or "?")
        tier = tiers.get(runbook)
        if tier is None and run_id in ends:  # a composed run names its tier in its summary (docs/reports.md)
            tier = _declared_tier(_anchored_summary(home / "runs" / run_id, ends[run_id]) or {})
        key = (quarter(when), str(tier) if tier is not None else UNTIERED)
        row = rows.setdefault(key, _new_row(key, tier))
        _count(row, start, ends.get(run_id), home / "runs" / run_id)
    ordered = sorted(rows.values(), key=lambda row: (row.quarter, row.tier == UNTIERED, row.tier))
    return {"trail": str(trail), "records": checked["records"], "limits": checked["limits"],
            "since": since.isoformat() if since else None, "rows": [row.to_dict() for row in ordered]}


def _catalog_tiers() -> Dict[str, Optional[int]]:
    from erlmcp_dr import catalog

    try:
        return {name: runbook.tier for name, runbook in catalog.discover().items()}
    except Exception:  # no collection found: every run is untiered, and the table says so
        return {}


def _runs(records: List[Dict[str, Any]]) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, Dict[str, Any]]]:
    starts: Dict[str, Dict[str, Any]] = {}
    ends: Dict[str, Dict[str, Any]] = {}
    for record in records:
        kind = record.get("kind")
        if kind == "run_start":
            starts.setdefault(str(record.get("run_id")), record)
        elif kind == "run_end":
            ends.setdefault(str(record.get("run_id")), record)
    return starts, ends


def _new_row(key: Tuple[str, str], tier: Optional[int]) -> Row:
    row = Row(quarter=key[0], tier=key[1])
    if tier is not None:
        try:
            objectives = bia.tier_objectives(tier)
        except bia.BiaError:  # a tier outside the table: counted, not measured
            return row
        row.rto_limit_seconds, row.rpo_limit_seconds = objectives["rto_seconds"], objectives["rpo_seconds"]
    return row


def _count(row: Row, start: Mapping[str, Any], end: Optional[Mapping[str, Any]], run_dir: Path) -> None:
    if start.get("check"):
        row.plans += 1
        return
    row.live_runs += 1
    parameters = start.get("parameters") if isinstance(start.get("parameters"), dict) else {}
    if "drill" in str(start.get("runbook") or "") or parameters.get("drill") is True:
        row.drills += 1
    if end is None:
        row.unfinished += 1
        return
    if end.get("result") != "successful" or end.get("rc") != 0:
        row.failed += 1
        return
    row.succeeded += 1
    duration = end.get("duration_seconds")
    if isinstance(duration, (int, float)) and row.rto_limit_seconds is not None:
        row.rto_measured += 1
        row.rto_met += bool(bia.meets(duration, row.rto_limit_seconds))
        row.rto_worst_seconds = max(row.rto_worst_seconds or 0.0, float(duration))
    summary = _anchored_summary(run_dir, end)
    lost = _lost_seconds(summary) if summary is not None else None
    if lost is not None and row.rpo_limit_seconds is not None:
        row.rpo_measured += 1
        row.rpo_met += bool(bia.meets(lost, row.rpo_limit_seconds))
        row.rpo_worst_seconds = max(row.rpo_worst_seconds or 0.0, lost)
    level = _degradation(summary or {})
    if level is not None:
        row.degradation[level] = row.degradation.get(level, 0) + 1


def _anchored_summary(run_dir: Path, end: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The run's summary envelope when its result.json is anchored by this run_end record, else None."""
    data = paths.read_json_object(run_dir / RESULT_FILE)
    head = data.get("audit_head") if isinstance(data.get("audit_head"), dict) else {}
    if head.get("seq") != end.get("seq") or head.get("hash") != end.get("hash"):
        return None
    summary = (data.get("facts") or {}).get("summary")
    return summary if isinstance(summary, dict) else {}


def _declared_tier(summary: Mapping[str, Any]) -> Optional[int]:
    details = summary.get("details") if isinstance(summary.get("details"), dict) else {}
    tier = details.get("tier")
    return tier if isinstance(tier, int) and not isinstance(tier, bool) else None


def _lost_seconds(summary: Mapping[str, Any]) -> Optional[float]:
    point = summary.get("recovery_point")
    if point is None and "recovery_point" in summary:
        return 0.0  # the runbook risks no data
    if not isinstance(point, dict):
        return None
    if point.get("lost_seconds") is not None:
        return float(point["lost_seconds"])
    return 0.0 if point.get("lost_bytes") == 0 else None


def _degradation(summary: Mapping[str, Any]) -> Optional[str]:
    details = summary.get("details") if isinstance(summary.get("details"), dict) else {}
    found = details.get("degradation")
    if isinstance(found, str) and found in bia.DEGRADATION_LEVELS:
        return found
    if isinstance(found, dict):
        try:
            return bia.degradation_level(found.get("available_nodes"), found.get("error_rate"),
                                         found.get("replication_lag_ms"))
        except bia.BiaError:
            return "unreadable"
    return None


def quarter(when: dt.datetime) -> str:
    when = when.astimezone(dt.UTC)
    return f"{when.year}-Q{(when.month - 1) // 3 + 1}"


def _time(record: Mapping[str, Any]) -> Optional[dt.datetime]:
    try:
        return audit.parse_time(str(record.get("time") or ""))
    except (ValueError, IndexError):
        return None


def render(summary: Mapping[str, Any]) -> str:
    """The table for a person."""
    header = ["QUARTER", "TIER", "LIVE", "PLANS", "DRILLS", "OK", "FAILED", "UNFINISHED", "RTO MET", "RTO WORST",
              "RPO MET", "RPO WORST", "DEGRADATION"]
    rows = [header]
    for row in summary["rows"]:
        rows.append([row["quarter"], row["tier"], str(row["live_runs"]), str(row["plans"]), str(row["drills"]),
                     str(row["succeeded"]), str(row["failed"]), str(row["unfinished"]),
                     _ratio(row["rto_met"], row["rto_measured"], row["rto_limit_seconds"]),
                     bia.seconds(row["rto_worst_seconds"]),
                     _ratio(row["rpo_met"], row["rpo_measured"], row["rpo_limit_seconds"]),
                     bia.seconds(row["rpo_worst_seconds"]),
                     ", ".join(f"{level} {count}" for level, count in sorted(row["degradation"].items())) or "-"])
    since = f" since {summary['since']}" if summary.get("since") else ""
    if len(rows) == 1:
        return f"no runs in the audit trail {summary['trail']}{since}"
    widths = [max(len(row[index]) for row in rows) for index in range(len(header))]
    lines = [f"runs in the audit trail {summary['trail']}{since} ({summary['records']} records, chain intact):"]
    lines.extend("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                 for row in rows)
    lines.append("RTO/RPO MET: live runs that succeeded within the tier's limit / those measured (limit in "
                 "brackets); RPO is measured from result.json files the trail anchors.")
    lines.extend(f"not checked: {limit}" for limit in summary.get("limits") or [])
    return "\n".join(lines)


def _ratio(met: int, measured: int, limit: Optional[float]) -> str:
    if limit is None:
        return "-"
    return f"{met}/{measured} (<= {bia.seconds(limit)})"
