# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""region_health's decisions, pure (no I/O; unit-tested): the rows from every host's health checks, one verdict
per region, the writers that make a split, and the table drawn from the summary. Wrapped as the filter
erlmcp.dr.region_health_summary. Private to the collection.

A region's verdict:
- failed: a part of it failed, or it holds one of two (or more) writers of one system - two Redis primaries, two
  writable PostgreSQL servers among the nodes checked - (a split: issue 16 row 4; a returning old Redis primary
  restarted as a primary beside the one redis_failover made);
- flapping: else, a part flapped;
- healthy: every part was confirmed (or found, unconfirmed) healthy.
A split is seen only among the nodes checked (regions=... may leave one writer out of sight).
"""

from __future__ import annotations

VERDICT_ORDER = ("failed", "flapping", "healthy")
# component -> (what makes a row a writer, what the system's writer is called)
WRITERS = {
    "redis": (lambda row: row.get("role") == "primary", "Redis primaries"),
    "database": (lambda row: row.get("writable") is True, "writable PostgreSQL servers"),
}
TABLE_HEADER = ("region", "verdict", "part", "host", "target", "state", "latency", "problem")
TABLE_FORMAT = "%-7s %-9s %-9s %-8s %-32s %-10s %9s"


def rows(hosts, hostvars, register="region_health_checks"):
    """One row per check a host ran (its registered loop result), in host order: what the table and the
    verdicts are made of. Checks skipped (a region not asked for) give no row."""
    out = []
    seen = set()
    for host in hosts:
        if host in seen:
            continue
        seen.add(host)
        found = hostvars[host].get(register) or {}
        for check in found.get("results") or []:
            if not isinstance(check, dict) or "verdict" not in check:
                continue
            last = (check.get("samples") or [{}])[-1]
            out.append(dict(host=host, region=hostvars[host].get("dr_region"),
                            component=(check.get("item") or {}).get("component"), verdict=check["verdict"],
                            confirmed=check.get("confirmed"), target=check.get("target"),
                            samples=check.get("sample_count"), failures=check.get("failures"),
                            latency_ms=last.get("latency_ms"), role=last.get("role"),
                            writable=last.get("writable"), status=last.get("status"),
                            error=check.get("last_error")))
    return out


def splits(checks):
    """[{component, hosts, regions, message}] for every system with more than one writer among the rows."""
    found = []
    for component, (is_writer, what) in sorted(WRITERS.items()):
        writers = [row for row in checks if row.get("component") == component and is_writer(row)]
        if len(writers) > 1:
            names = ", ".join("%s (region %s)" % (row["host"], row["region"]) for row in writers)
            found.append(dict(component=component, hosts=[row["host"] for row in writers],
                              regions=sorted(set(row["region"] for row in writers)),
                              message="split: %s take writes at once: %s" % (what, names)))
    return found


def region_verdicts(checks):
    """{region: {verdict, reasons, parts}}: failed if a part failed or it holds a writer of a split, else
    flapping if a part flapped, else healthy. reasons say why, one sentence each."""
    split_list = splits(checks)
    out = {}
    for region in sorted(set(row["region"] for row in checks)):
        parts = [row for row in checks if row["region"] == region]
        reasons = ["%s on %s %s: %s" % (row["component"], row["host"], row["verdict"], row.get("error") or "")
                   for row in parts if row["verdict"] != "healthy"]
        reasons += [split["message"] for split in split_list if region in split["regions"]]
        verdicts = set(row["verdict"] for row in parts)
        if "failed" in verdicts or any(region in split["regions"] for split in split_list):
            verdict = "failed"
        elif "flapping" in verdicts:
            verdict = "flapping"
        else:
            verdict = "healthy"
        out[region] = dict(verdict=verdict, reasons=reasons, parts=parts)
    return out


def summary(checks):
    """What region_health publishes (set_stats `summary`): the verdict per region, the regions by verdict, the
    splits, every check, and the table drawn from them."""
    regions = region_verdicts(checks)
    verdicts = dict((region, found["verdict"]) for region, found in regions.items())
    out = dict(regions=verdicts, checks=list(checks), splits=splits(checks),
               reasons=dict((region, found["reasons"]) for region, found in regions.items() if found["reasons"]))
    for verdict in VERDICT_ORDER:
        out["%s_regions" % verdict] = sorted(r for r, v in verdicts.items() if v == verdict)
    out["table"] = table(out)
    return out


def _state(part):
    if part.get("role"):
        return part["role"]
    if part.get("writable") is not None:
        return "writable" if part["writable"] else "read-only"
    if part.get("status"):
        return "HTTP %s" % part["status"]
    return "-"


def _target(text):
    text = str(text or "")
    return text if len(text) <= 32 else text[:31] + "~"


def table(found):
    """The lines of the region table, from a summary (regions, checks, splits): one line per part, the region
    and its verdict on its first line, a problem after a part that is not healthy, the splits last."""
    lines = [(TABLE_FORMAT + "  %s") % TABLE_HEADER]
    for region in sorted(found.get("regions") or {}):
        parts = [row for row in found.get("checks") or [] if row.get("region") == region]
        for index, part in enumerate(parts):
            problem = "" if part["verdict"] == "healthy" else "  %s%s: %s" % (
                part["verdict"], "" if part.get("confirmed") else " (unconfirmed)", part.get("error") or "")
            latency = "%.1f ms" % part["latency_ms"] if part.get("latency_ms") is not None else "-"
            lines.append(TABLE_FORMAT % (region if index == 0 else "", found["regions"][region] if index == 0 else "",
                                         part.get("component"), part.get("host"), _target(part.get("target")),
                                         _state(part), latency) + problem)
    for split in found.get("splits") or []:
        lines.append("FAILED  %s" % split["message"])
    return lines
