# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""readiness's judges, pure (no I/O; unit-tested at every boundary): each takes what was measured and the
thresholds, and returns one check {name, measured, unit, threshold, source, verdict, detail}. The engine
(_region/readiness.py) measures; these decide. Private to the collection.

Thresholds come from the inventory's `dr_readiness` mapping, key by key, over DEFAULTS; each default names where
it comes from (MISSION's tier 1, a seed line, or this collection's choice) and docs/readiness.md says which of
the seeds' contradicting numbers was picked and why.
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._region import bia as _bia

PASS, WARN, FAIL = "pass", "warn", "fail"
VERDICTS = (PASS, WARN, FAIL)
READY, WARNINGS, NOT_READY = "ready", "warnings", "not_ready"

# name -> (value, where it comes from). The inventory's dr_readiness overrides the value (source: inventory).
DEFAULTS = {
    # The service's tier objectives come from the one BIA table (_bia.TIERS; thresholds() applies the inventory's
    # dr_tier_objectives): MISSION's tier 1 wins over the seeds' 5 s lag gate (S3:2554).
    "rpo_seconds": (float(_bia.TIERS[_bia.DEFAULT_TIER]["rpo_seconds"]), "tier 1 RPO (BIA table; MISSION: RPO < 1 s)"),
    "rto_seconds": (float(_bia.TIERS[_bia.DEFAULT_TIER]["rto_seconds"]),
                    "tier 1 RTO (BIA table; MISSION: RTO < 5 min)"),
    "pg_lag_bytes": (16 * 1024 * 1024, "one WAL segment (collection default; no seed sets bytes)"),
    "standbys_per_region": (1, "MISSION: streaming standbys in the other regions"),
    "redis_offset_bytes": (1024 * 1024, "collection default (no seed sets bytes)"),
    "redis_backup_age_seconds": (300.0, "seed S2:162 (Redis backups every 5 min)"),
    "pg_backup_age_seconds": (900.0, "seed S2:156 (PostgreSQL backups every 15 min)"),
    "wal_archive_age_seconds": (60.0, "collection default (archive_timeout-sized)"),
    "pg_restore_verified_age_seconds": (90000.0, "collection default (a daily pg_restore_verify, an hour's slack)"),
    "dns_ttl_seconds": (60.0, "seeds TTL 30/60 s (S3 Update DNS); the rest of the 300 s RTO budget is the failover's"),
    "capacity_ratio": (0.8, "seed S3:1478-1494 (target capacity > 0.8)"),
    "cert_days": (30.0, "issue 20 (certificates valid >= 30 days)"),
    "contacts_age_days": (31.0, "seed S1:365 (contacts refreshed monthly)"),
    "drill_age_days": ({"database_primary": 92.0, "redis_primary": 92.0, "app_instance": 92.0, "region": 183.0},
                       "seeds S1:207, S4:460 (failover drill quarterly), S1:208, S4:461 (full DR semi-annual)"),
}


def thresholds(overrides, tier_objectives=None, tier=_bia.DEFAULT_TIER):
    """{name: (value, source)}: DEFAULTS, the RPO and RTO of `tier` from the BIA table with the inventory's
    dr_tier_objectives (`tier_objectives`), then each key the inventory's dr_readiness sets taken from it. An
    unknown key or a value of the wrong kind is an error naming the key, what was found and what is expected."""
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise ValueError("dr_readiness must be a mapping of threshold name to value; found %s"
                         % type(overrides).__name__)
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ValueError("dr_readiness: unknown threshold(s) %s; expected some of %s"
                         % (", ".join(unknown), ", ".join(sorted(DEFAULTS))))
    out = dict(DEFAULTS)
    if tier_objectives:
        try:
            objectives = _bia.tier_objectives(tier, tier_objectives)
        except _bia.BiaError as exc:
            raise ValueError(str(exc)) from None
        for name in ("rpo_seconds", "rto_seconds"):
            out[name] = (float(objectives[name]),
                         "tier %s %s (inventory dr_tier_objectives)" % (tier, name[:3].upper()))
    for name, value in overrides.items():
        default = DEFAULTS[name][0]
        if isinstance(default, dict):
            if not isinstance(value, dict) or not all(_is_number(v) and v > 0 for v in value.values()):
                raise ValueError("dr_readiness.%s: expected a mapping of drill kind to days (> 0); found %r"
                                 % (name, value))
            value = dict(default, **dict((k, float(v)) for k, v in value.items()))
        elif not _is_number(value) or value < 0:
            raise ValueError("dr_readiness.%s: expected a number >= 0; found %r" % (name, value))
        out[name] = (value, "inventory dr_readiness.%s" % name)
    return out


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check(name, verdict, measured=None, unit=None, threshold=None, source=None, detail=""):
    if verdict not in VERDICTS:
        raise ValueError("verdict %r: expected one of %s" % (verdict, ", ".join(VERDICTS)))
    return dict(name=name, measured=measured, unit=unit, threshold=threshold, source=source, verdict=verdict,
                detail=detail)


def overall(checks):
    """not_ready when a check failed, else warnings when one warned, else ready; with the exit code the
    `runbook readiness` command gives (0, 1, 2)."""
    verdicts = set(c["verdict"] for c in checks)
    if FAIL in verdicts or not checks:
        return NOT_READY, 2
    if WARN in verdicts:
        return WARNINGS, 1
    return READY, 0


def counts(checks):
    return dict((v, sum(1 for c in checks if c["verdict"] == v)) for v in VERDICTS)


# ---------------------------------------------------------------- 1, 2 PostgreSQL


def pg_replay_lag(standby, lag_bytes, lag_seconds, paused, limits):
    """One standby's replay lag (idle-aware: lag_seconds is how long the standby took to replay the primary's
    LSN as of the check, 0 when it had already; None when it did not within the RPO, so it is at least that)."""
    max_bytes, bytes_source = limits["pg_lag_bytes"]
    rpo, rpo_source = limits["rpo_seconds"]
    name = "pg_replay_lag %s" % standby
    threshold = "%s B and %s s" % (max_bytes, rpo)
    source = "%s; %s" % (rpo_source, bytes_source)
    if lag_bytes is None:
        return check(name, FAIL, None, "B", threshold, source, "the standby's replay position could not be read")
    seconds = lag_seconds
    measured = "%s B, %s" % (lag_bytes, "> %s s" % rpo if seconds is None else "%.3f s" % seconds)
    if seconds is None or seconds > rpo:
        return check(name, FAIL, measured, "B, s", threshold, source,
                     "replay is paused (pg_wal_replay_resume)" if paused else
                     "the standby did not replay the primary's position within the RPO")
    if lag_bytes > max_bytes:
        return check(name, FAIL, measured, "B, s", threshold, source, "more WAL unreplayed than allowed")
    if paused:
        return check(name, WARN, measured, "B, s", threshold, source,
                     "replay is paused: nothing is missing yet, the next write will be (pg_wal_replay_resume)")
    return check(name, PASS, measured, "B, s", threshold, source, "caught up" if lag_bytes == 0 else "replaying")


def pg_standbys(region, streaming, limits):
    need, source = limits["standbys_per_region"]
    name = "pg_standbys region %s" % region
    verdict = PASS if len(streaming) >= need else FAIL
    return check(name, verdict, len(streaming), "standbys", ">= %s" % need, source,
                 ", ".join(streaming) if streaming else "no streaming standby in this target region")


# ---------------------------------------------------------------- 3, 4, 5 Redis


def redis_links(replica, link_status, upstream, primary):
    name = "redis_link %s" % replica
    if link_status == "up" and (primary is None or upstream == primary):
        return check(name, PASS, "up", None, "up", "issue 20", "replicating from %s" % upstream)
    what = "link %s" % (link_status or "unknown") if link_status != "up" else "replicating from %s, not the " \
        "primary %s" % (upstream, primary)
    return check(name, FAIL, link_status or "unreachable", None, "up", "issue 20", what)


def redis_offset(replica, lag_bytes, limits):
    limit, source = limits["redis_offset_bytes"]
    name = "redis_offset %s" % replica
    if lag_bytes is None:
        return check(name, FAIL, None, "B", "<= %s" % limit, source, "no offset behind a single primary")
    verdict = PASS if lag_bytes <= limit else FAIL
    return check(name, verdict, lag_bytes, "B", "<= %s" % limit, source, "behind the primary's offset")


def age_check(name, age_seconds, limit_name, limits, missing_detail, missing_verdict=FAIL, unit="s", scale=1.0,
              detail=""):
    """An age against its threshold (age in seconds; shown in `unit`, seconds / scale)."""
    limit, source = limits[limit_name]
    if age_seconds is None:
        return check(name, missing_verdict, None, unit, "<= %s" % limit, source, missing_detail)
    shown = round(age_seconds / scale, 3)
    verdict = PASS if shown <= limit else FAIL
    return check(name, verdict, shown, unit, "<= %s" % limit, source,
                 ("too old" if verdict == FAIL else "recent enough") + ("; %s" % detail if detail else ""))


def newest_verified(backups):
    """The newest verified backup's metadata (by its save time), or None."""
    verified = [b for b in backups if b.get("verified")]
    return max(verified, key=lambda b: (b.get("lastsave") or 0, b.get("id") or "")) if verified else None


def redis_backup(intact, damaged, age_seconds, limits, store_dir, hashed_max):
    """Check 5: the age of the newest backup that would restore (verified when made, its stored file still has its
    sha256). A damaged newer backup fails it whatever that age: redis_restore's backup=latest chooses the newest
    backup its metadata calls verified, and refuses it. `damaged`: the newer backups whose file did not match,
    newest first ({id, found, expected}); `intact`: the newest that did (None: none of the hashed ones)."""
    if not damaged:
        return age_check("redis_backup_age", age_seconds, "redis_backup_age_seconds", limits,
                         "no verified backup in %s (run redis_backup)" % store_dir,
                         detail=None if intact is None else "backup %s, its sha256 checked" % intact.get("id"))
    limit, source = limits["redis_backup_age_seconds"]
    said = []
    for bad in damaged:
        said.append("backup %s is damaged: %s" % (bad["id"], "its file is missing" if bad["found"] is None else
                                                  "the sha256 of its file is %s, its metadata says %s"
                                                  % (bad["found"], bad["expected"])))
    if intact is not None:
        newest = "the newest backup that verifies: %s, %s s old" % (intact.get("id"), round(age_seconds or 0.0, 3))
    elif len(damaged) < hashed_max:
        newest = "no verified backup verifies"
    else:
        newest = "none of the newest %s verified backups verifies (older ones are not hashed)" % hashed_max
    return check("redis_backup_age", FAIL, None if age_seconds is None else round(age_seconds, 3), "s",
                 "<= %s" % limit, source,
                 "%s (redis_restore refuses it, and backup=latest chooses it: run redis_backup); %s"
                 % ("; ".join(said), newest))


def not_configured(name, what, hook):
    """A check whose source is not set up yet: a warning, never a pass (issue 20)."""
    return check(name, WARN, None, None, None, "issue 20", "not configured: %s (%s)" % (what, hook))


# ---------------------------------------------------------------- 8, 9, 10 DNS


def dns_ttl(record, rows, limits):
    limit, source = limits["dns_ttl_seconds"]
    name = "dns_ttl %s" % record
    unanswered = [r["name"] for r in rows if r.get("error")]
    ttls = [r["ttl"] for r in rows if not r.get("error") and r.get("ttl") is not None]
    if unanswered or not ttls:
        return check(name, FAIL, None, "s", "<= %s" % limit, source,
                     "no TTL from %s" % (", ".join(unanswered) or "any authoritative server"))
    worst = max(ttls)
    per_server = ", ".join("%s %s" % (r["name"], r["ttl"]) for r in rows)
    return check(name, PASS if worst <= limit else FAIL, worst, "s", "<= %s" % limit, source, per_server)


def dns_agree(record, rows):
    name = "dns_agree %s" % record
    answers = dict((r["name"], r.get("error") or ",".join(r.get("values") or []) or "no record") for r in rows)
    agree = bool(rows) and not any(r.get("error") for r in rows) and len(set(answers.values())) == 1
    return check(name, PASS if agree else FAIL, len(set(answers.values())), "distinct answers", 1, "issue 20",
                 "; ".join("%s: %s" % item for item in sorted(answers.items())) or "no authoritative server")


# What an UPDATE whose prerequisite cannot match proves about the key (RFC 2136 3.2.5, RFC 8945 5.3).
PROVES_KEY = ("NXRRSET", "YXRRSET", "NXDOMAIN")


def dns_credentials(where, outcome):
    """outcome: the rcode text of the probe UPDATE, or an error kind text (BADSIG, BADKEY, BADTIME, NOTAUTH...)."""
    name = "dns_credentials %s" % where
    if outcome in PROVES_KEY:
        return check(name, PASS, outcome, None, "NXRRSET or YXRRSET", "RFC 2136 prerequisite",
                     "the server checked the signed UPDATE's prerequisite (nothing changed)")
    if outcome == "NOERROR":
        return check(name, FAIL, outcome, None, "NXRRSET or YXRRSET", "RFC 2136 prerequisite",
                     "the probe's prerequisite matched: the zone holds the probe record (remove it)")
    return check(name, FAIL, outcome, None, "NXRRSET or YXRRSET", "RFC 2136 prerequisite",
                 "the update credentials were refused (tsig_key_name, tsig_key_secret)")


# ---------------------------------------------------------------- 11 reachability, 12 capacity, 13 certificates


def reachable(region, parts):
    """parts: [{part, target, ok, error}] of one region."""
    name = "reachable region %s" % region
    down = ["%s %s: %s" % (p["part"], p["target"], p.get("error") or "failed") for p in parts if not p["ok"]]
    if not parts:
        return check(name, FAIL, 0, "parts", "all", "issue 20", "nothing declared in this region")
    return check(name, FAIL if down else PASS, "%s/%s" % (len(parts) - len(down), len(parts)), "parts", "all",
                 "issue 20", "; ".join(down) or ", ".join(sorted(set(p["part"] for p in parts))))


def capacity(region, declared, load, limits):
    """declared: the target region's capacity (same units as load), or None; load: the current load, or None."""
    limit, source = limits["capacity_ratio"]
    name = "capacity region %s" % region
    if declared is None or load is None:
        return check(name, WARN, None, "ratio", ">= %s" % limit, source,
                     "undeclared: set dr_capacity.regions.%s and dr_capacity.load in the inventory" % region)
    if not _is_number(declared) or not _is_number(load) or load < 0 or declared < 0:
        return check(name, FAIL, None, "ratio", ">= %s" % limit, source,
                     "dr_capacity: expected numbers >= 0; found capacity %r, load %r" % (declared, load))
    ratio = float(declared) / float(load) if load else float("inf")
    shown = round(ratio, 3) if load else "no load"
    return check(name, PASS if ratio >= limit else FAIL, shown, "ratio", ">= %s" % limit, source,
                 "capacity %s for a load of %s" % (declared, load))


def certificate(url, days_left, error, limits):
    limit, source = limits["cert_days"]
    name = "certificate %s" % url
    if error:
        return check(name, FAIL, None, "days", ">= %s" % limit, source, error)
    shown = round(days_left, 1)
    return check(name, PASS if days_left >= limit else FAIL, shown, "days", ">= %s" % limit, source,
                 "expires in %s days" % shown)


# ---------------------------------------------------------------- 16 the lock store on etcd

AUTOMATION_UNAVAILABLE = "automation unavailable"  # the words `runbook watch`'s observers use for the same state
ETCD_UNTOUCHED = ("The databases are untouched: an etcd outage blocks automation (the run lock fails closed), it never "
                  "demotes or stops a database (docs/design.md, the run lock)")


def lock_store_etcd(answers, prefix):
    """The etcd lock store from each member's answer to a linearizable read of the lock prefix (pure).

    answers: [{endpoint, ok, error, locks}], one per member of dr_lock_etcd_endpoints; ok means the member served
    the read, which it only does with a quorum behind it. Every member -> pass; a quorum but not every member ->
    warn, naming the others (runs still take the lock); fewer than a quorum -> fail, "automation unavailable": every
    run fails closed on its run lock."""
    total = len(answers)
    quorum = total // 2 + 1
    answering = [a for a in answers if a["ok"]]
    silent = ["%s (%s)" % (a["endpoint"], short_error(a.get("error"))) for a in answers if not a["ok"]]
    measured = "%d/%d" % (len(answering), total)
    threshold = "all (a quorum: %d)" % quorum
    name = "lock_store etcd"
    if total and len(answering) == total:
        held = max(a.get("locks") or 0 for a in answering)
        return check(name, PASS, measured, "members", threshold, "issue 22",
                     "every member answers; a linearizable read of %s works (%d run lock%s held now)" % (
                         prefix, held, "" if held == 1 else "s"))
    if total and len(answering) >= quorum:
        return check(name, WARN, measured, "members", threshold, "issue 22",
                     "a quorum answers, so runs still take the run lock; not answering: %s" % "; ".join(silent))
    return check(name, FAIL, measured, "members", threshold, "issue 22",
                 "%s: %d of %d etcd members answer a linearizable read of %s, a quorum needs %d; every run fails "
                 "closed on its run lock. Not answering: %s. %s" % (
                     AUTOMATION_UNAVAILABLE, len(answering), total, prefix, quorum, "; ".join(silent) or "none",
                     ETCD_UNTOUCHED))


def short_error(text):
    """The reason in an HTTP client's error ("[Errno 111] Connection refused", "Read timed out"), not its wrapping
    (the pool, the URL the detail names already); other errors (etcd's own, a refused login) whole."""
    import re

    text = (text or "no answer").strip()
    errno = re.search(r"\[Errno -?\d+\] [^\"'()]+", text)
    if errno:
        return errno.group(0).strip()
    timed_out = re.search(r"Read timed out\.? \(read timeout=[\d.]+\)", text)
    if timed_out:
        return "%s: no answer within the request timeout" % timed_out.group(0)
    return text[:300]


def lock_store_unusable(problem):
    """The etcd lock store's settings cannot be used (a bad dr_lock_etcd_* value): the run lock refuses every run."""
    return check("lock_store etcd", FAIL, None, "members", None, "issue 22",
                 "%s: %s. %s" % (AUTOMATION_UNAVAILABLE, problem, ETCD_UNTOUCHED))


# ---------------------------------------------------------------- 14 drills, 17 contacts


def drills(records, now, limits):
    """One check per drill kind of the schedule: its last record's age and verdict. records: parsed history
    lines ({kind, finished_at (epoch seconds), verdict})."""
    schedule, source = limits["drill_age_days"]
    out = []
    for kind in sorted(schedule):
        mine = [r for r in records if r.get("kind") == kind]
        name = "drill %s" % kind
        limit = schedule[kind]
        if not mine:
            out.append(check(name, WARN, None, "days", "<= %s" % limit, source, "no drill of this kind recorded"))
            continue
        last = max(mine, key=lambda r: r["finished_at"])
        days = round((now - last["finished_at"]) / 86400.0, 2)
        if last.get("verdict") != "passed":
            out.append(check(name, FAIL, days, "days", "<= %s" % limit, source,
                             "the last drill (%s) did not pass: %s" % (last.get("run_id"), last.get("verdict"))))
        else:
            out.append(check(name, PASS if days <= limit else FAIL, days, "days", "<= %s" % limit, source,
                             "%slast passed %s (%s)" % ("" if days <= limit else "overdue: ",
                                                        last.get("finished_at_text", ""), last.get("run_id"))))
    return out


# ---------------------------------------------------------------- the table


TABLE_HEADER = ("verdict", "check", "measured", "threshold", "source", "detail")


def _cell(value, unit=None):
    if value is None:
        return "-"
    return "%s %s" % (value, unit) if unit and not isinstance(value, str) else str(value)


def table(checks, verdict=None):
    """The terminal table: one line per check, failures first, then warnings, then passes (each group in
    check order), and the overall verdict last."""
    order = dict((v, i) for i, v in enumerate((FAIL, WARN, PASS)))
    rows = [TABLE_HEADER] + [
        (c["verdict"].upper(), c["name"], _cell(c["measured"], c["unit"]), _cell(c["threshold"]),
         str(c["source"] or "-"), str(c["detail"] or ""))
        for c in sorted(checks, key=lambda c: order[c["verdict"]])]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join([r[i].ljust(widths[i]) for i in range(4)] + [_detail_cell(r)]).rstrip() for r in rows]
    verdict = verdict or overall(checks)[0]
    tally = counts(checks)
    lines.append("readiness: %s (%s passed, %s warnings, %s failed)"
                 % (verdict.replace("_", " "), tally[PASS], tally[WARN], tally[FAIL]))
    return lines


def _detail_cell(row):
    """The table's last cell: the detail, then the source in brackets (not on the header row)."""
    return row[5] + ("" if row[0] == "verdict" else "  [%s]" % row[4])
