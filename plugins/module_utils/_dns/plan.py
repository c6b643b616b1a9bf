# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dns_cutover runbook's decisions, pure (no I/O, no driver): the servers from the inventory, the lock key,
the plan (targets, guards, refusal, TTL warnings), the end state and the summary. Wrapped as erlmcp.dr filters."""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.erlmcp.dr.plugins.module_utils._common.summary import confirmation, envelope, served

RUN_ID = re.compile(r"^[A-Za-z0-9._:@+-]{1,200}$")
# Every name is read at every server while the zone's run lock is held (2,000 names held it ~110 s in a plan):
# a run changes at most this many records unless max_records says otherwise.
DEFAULT_MAX_RECORDS = 100
# The parameter through which `runbook run` hands the confirmed plan's guard values to the run (docs/dns.md).
CONFIRMED = "confirmed_values"
LABEL = re.compile(r"^(\*|[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)$")


def split(text):
    """'a, b' -> ['a', 'b']: the runbook's list parameters are comma-separated text (a list is accepted too)."""
    if text is None:
        return []
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def is_name(text):
    """A DNS name (relative or absolute; '@' for the apex): labels of letters, digits, '-', '_' (or '*')."""
    if text == "@":
        return True
    name = text[:-1] if text.endswith(".") else text
    return 0 < len(name) <= 253 and all(LABEL.match(label) for label in name.split("."))


def _value_problem(value, rdtype):
    try:
        if rdtype == "A":
            ipaddress.IPv4Address(value)
        elif rdtype == "AAAA":
            ipaddress.IPv6Address(value)
        elif not is_name(value):
            return "%r is not a host name" % value
    except ValueError:
        return "%r is not an IPv%s address" % (value, 4 if rdtype == "A" else 6)
    return None


def check_params(dr, records, region_addresses):
    """The runbook's parameters checked before any server is asked: records (default: the inventory's),
    exactly one target (region, values or rollback_of), names and values of the record type. Returns records,
    target, expected (None: what the servers answer) and problems (each naming the parameter)."""
    rdtype = dr.get("type") or "A"
    out = dict(records=split(dr.get("records")) or split(records), target=None, expected=None, problems=[])
    problems = out["problems"]
    chosen = [key for key in ("region", "values", "rollback_of") if dr.get(key)]
    if len(chosen) != 1:
        problems.append("give exactly one of region, values or rollback_of (got %s)" % (", ".join(chosen) or "none"))
    if not out["records"]:
        problems.append("no records to change: give records (comma-separated), or set dns_records in the inventory")
    problems.extend("records: %r is not a DNS name" % name for name in out["records"] if not is_name(name))
    problems.extend(_scope_problems(dr, out["records"]))
    if dr.get("region"):
        if dr["region"] not in (region_addresses or {}):
            problems.append("region %r is not in the inventory's dns_region_addresses (regions: %s)" % (
                dr["region"], ", ".join(sorted(region_addresses or {})) or "none"))
        else:
            address = region_addresses[dr["region"]]
            out["target"] = sorted(split(address))
    elif dr.get("values"):
        out["target"] = sorted(split(dr["values"]))
    if dr.get("rollback_of") and not RUN_ID.match(str(dr["rollback_of"])):
        problems.append("rollback_of is %r, not a run id (letters, digits and ._:@+- only)" % dr["rollback_of"])
    if dr.get("expected_values"):
        out["expected"] = sorted(split(dr["expected_values"]))
    given = (("values", out["target"] if dr.get("values") else None), ("expected_values", out["expected"]),
             ("region", out["target"] if dr.get("region") else None))
    for option, values in given:
        values = values or []
        problems.extend("%s: %s" % (option, p) for p in (_value_problem(v, rdtype) for v in values) if p)
    problems.extend(_confirmed_problems(dr.get(CONFIRMED), rdtype))
    return out


def _scope_problems(dr, records):
    """The apex only when asked for (allow_apex), and no more names than max_records."""
    problems = []
    if "@" in records and not dr.get("allow_apex"):
        problems.append("records: '@' is the zone apex, which holds the zone's SOA and NS records: changing its "
                        "%s record moves the zone's own name. Name the records to change (e.g. api,health), or set "
                        "allow_apex=true if the apex is meant" % (dr.get("type") or "A"))
    limit = dr.get("max_records") or DEFAULT_MAX_RECORDS
    if len(records) > limit:
        problems.append("records: %d names, more than max_records (%d): every name is read at every server while "
                        "the zone stays locked. Split the cutover into smaller runs, or raise max_records"
                        % (len(records), limit))
    return problems


def confirmed_values(given):
    """confirmed_values as {absolute name (lower case): sorted values}, or None when not given."""
    if given is None:
        return None
    return dict((str(name).lower(), sorted(split(values))) for name, values in given.items())


def _confirmed_problems(given, rdtype):
    if given is None:
        return []
    if not isinstance(given, dict):
        return ["%s is a %s: expected a mapping of record name to the values the confirmed plan saw (set by "
                "`runbook run` after the confirmation)" % (CONFIRMED, type(given).__name__)]
    problems = []
    for name, values in sorted(given.items(), key=lambda item: str(item[0])):
        if not is_name(str(name)):
            problems.append("%s: %r is not a DNS name" % (CONFIRMED, name))
        if not isinstance(values, (list, tuple, str)):
            problems.append("%s[%s] is a %s: expected a list of values" % (CONFIRMED, name, type(values).__name__))
            continue
        problems.extend("%s[%s]: %s" % (CONFIRMED, name, p) for p in (_value_problem(v, rdtype) for v in
                                                                      split(values)) if p)
    return problems


def published_records(summary):
    """The records a dns_cutover run published: under the envelope's details, or at the top for a run recorded before
    the envelope (or a cut-off run's records rebuilt from its events, _dns_rollback)."""
    summary = summary if isinstance(summary, dict) else {}
    details = summary.get("details")
    return (details if isinstance(details, dict) else summary).get("records") or []


def known_values(region_addresses, recorded, name):
    """The values a record may hold without anyone's say-so: any region's address, or what the last recorded
    cutover set on it."""
    known = set()
    for address in (region_addresses or {}).values():
        known.update(split(address))
    known.update((recorded or {}).get(name) or [])
    return known


def dns_servers(hosts, hostvars):
    """[{name, host, port, role}] for the inventory's dns group, the primary(ies) first."""
    out = []
    for name in hosts or []:
        hv = hostvars[name]
        out.append(dict(name=name, host=str(hv.get("dns_host") or name), port=int(hv.get("dns_port") or 53),
                        role=str(hv.get("dns_role") or "secondary")))
    return sorted(out, key=lambda s: (s["role"] != "primary", s["name"]))


# The DNS settings of a run: (module option, inventory variable, default), as the dns_cutover playbook's
# module_defaults for group/erlmcp.dr.dns give them to dns_record and dns_info; erlmcp.dr.dns_begin renders them
# itself, once the parameters passed. The TSIG key is left out: the reads send queries, which are not signed.
SETTINGS = (("provider", "dns_provider", "rfc2136"), ("zone", "dns_zone", None),
            ("hosted_zone_id", "dns_route53_zone_id", None), ("endpoint_url", "dns_aws_endpoint_url", None),
            ("timeout", "dns_timeout", 3.0))


def read_args(settings, servers, name, rdtype):
    """erlmcp.dr.dns_info's options to read `name` at every authoritative server: the settings given, and the
    inventory's servers (none for Route 53: the hosted zone's name servers, or the API behind a stand-in)."""
    args = dict((option, value) for option, value in settings.items() if value is not None)
    args.update(name=name, type=rdtype)
    if servers:
        args.update(server=servers[0]["host"], port=servers[0]["port"],
                    servers=[dict(name=s["name"], host=s["host"], port=s["port"], role=s["role"]) for s in servers])
    return args


def lock_key(zone):
    """What the run lock protects: the zone (one cutover per zone at a time, whatever the records)."""
    return "dns:%s" % (zone if zone.endswith(".") else zone + ".").lower()


def rollback_path(run_dir, run_id):
    """The result.json of run `run_id`, beside this run's folder; ValueError for an id that is not one."""
    if not RUN_ID.match(run_id or "") or run_id in (".", ".."):
        raise ValueError("rollback_of is %r, not a run id (letters, digits and ._:@+- only)" % run_id)
    parent = str(run_dir).rstrip("/").rsplit("/", 1)[0]
    return "%s/%s/result.json" % (parent, run_id)


def _values_of(item):
    return sorted(item["agreed_values"]) if item.get("agreed_values") is not None else None


def cutover_plan(before, dr, checked, rollback=None, rto_left=None, region_addresses=None, recorded=None):
    """What to do for each record, from what every server answers now (`before`: dns_info results).

    dr holds the runbook's validated parameters (force, rollback_of, expected_values, confirmed_values),
    checked what check_params returned, region_addresses the inventory's dns_region_addresses and recorded
    {name: values} what the last recorded cutover set on each record (dns_recorded_values); without
    region_addresses (None) no current value is checked against them.
    Returns action (change | none | refuse), reason, records [{name, current, target, expected, ttl, change}],
    target (what the records must hold; per record for a rollback), warnings.

    Refused: a record that no longer holds what the confirmed plan saw (confirmed_values; never forced), and,
    unless the guard is given explicitly (expected_values, rollback_of), a record about to be overwritten whose
    current value is none of the regions' addresses nor what the last recorded cutover set: someone else put it
    there, and a cutover must not silently undo another operator's change.
    """
    plan = dict(action="none", reason=None, records=[], warnings=[], target=checked.get("target"),
                rollback_of=None, type=dr.get("type") or "A")
    if checked.get("problems"):
        return dict(plan, action="refuse", reason="; ".join(checked["problems"]))
    targets = {}
    if dr.get("rollback_of"):
        for rec in published_records(((rollback or {}).get("facts") or {}).get("summary")):
            if rec.get("applied"):
                targets[rec["name"]] = dict(values=rec["previous"]["values"], ttl=rec["previous"].get("ttl"),
                                            expected=rec["new"]["values"])
        if not targets:
            return dict(plan, action="refuse", reason="run %s %s no record: there is nothing to roll back"
                        % (dr["rollback_of"], "planned to change" if (rollback or {}).get("interrupted")
                           else "changed"))
        plan["rollback_of"] = dr["rollback_of"]
        if (rollback or {}).get("interrupted"):
            plan["warnings"].append(
                "run %s was cut off before it finished (no result.json): rolling back every record its plan meant to "
                "change - each one holding its new value is put back, one it never reached is left as it is"
                % dr["rollback_of"])
    problems, moved, unknown = [], [], []
    confirmed = confirmed_values(dr.get(CONFIRMED))
    for info in before:
        name = info["name"]
        if targets and name not in targets:
            continue
        current = _values_of(info) if info.get("agree") else None
        primary = _primary_values(info)
        if not info.get("agree"):
            problems.append("%s: %s" % (name, info.get("disagreement") or "the servers disagree"))
        target = targets[name]["values"] if targets else plan["target"]
        if checked.get("expected"):
            expected = sorted(checked["expected"])
        elif targets:
            expected = targets[name]["expected"]
        else:
            expected = current if current is not None else primary
        now = current if current is not None else primary
        if confirmed is not None:
            seen = _confirmed_guard(name, now, confirmed, moved)
            expected = seen if seen is not None else expected
        elif region_addresses is not None and not checked.get("expected") and not targets and now != sorted(target):
            strangers = [v for v in now if v not in known_values(region_addresses, recorded, name)]
            if strangers:
                unknown.append((name, strangers, now))
        plan["records"].append(dict(
            name=name, current=now, target=sorted(target), expected=expected,
            ttl=(targets[name]["ttl"] if targets else None) or info.get("ttl"), change=now != sorted(target)))
        ttl = info.get("ttl") or 0
        if rto_left is not None and ttl > rto_left:
            plan["warnings"].append("%s has TTL %ss, more than the %ss left of the RTO budget: resolvers may keep the "
                                    "old answer after it" % (name, ttl, int(rto_left)))
    if moved:
        return dict(plan, action="refuse", reason="changed since the plan was confirmed: %s. Someone else changed "
                    "the zone while the question waited; nothing was changed. Look at the records, then run again to "
                    "see (and confirm) a new plan" % "; ".join(moved))
    if problems and not dr.get("force"):
        return dict(plan, action="refuse", reason="the authoritative servers disagree, so the current value is not "
                    "known: %s. Wait for them to agree, or set force=true (the guard then uses the primary's answer)"
                    % "; ".join(problems))
    if unknown:
        return dict(plan, action="refuse", reason="%s: none of the inventory's region addresses (%s) nor what the "
                    "last recorded cutover set, so another operator may have put it there on purpose; nothing was "
                    "changed. To replace it anyway, give the value you expect there now as expected_values (%s)" % (
                        "; ".join("%s holds %s" % (name, ", ".join(strangers)) for name, strangers, _now in unknown),
                        _regions_text(region_addresses), "expected_values=%s" % ",".join(unknown[0][2])))
    if problems:
        plan["warnings"].append("forced past a disagreement of the servers: %s" % "; ".join(problems))
    plan["action"] = "change" if any(r["change"] for r in plan["records"]) else "none"
    return plan


def _confirmed_guard(name, now, confirmed, moved):
    """The values the confirmed plan saw at `name` (the run's guard); a record that holds anything else now, or
    that the plan did not have, is added to `moved`."""
    seen = confirmed.get(name.lower())
    if seen is None:
        moved.append("%s was not in the confirmed plan" % name)
    elif now != seen:
        moved.append("%s held %s when the plan was confirmed and holds %s now" % (
            name, seen or "no record", now or "no record"))
    return seen


def _regions_text(region_addresses):
    return ", ".join("%s: %s" % (region, address) for region, address in sorted((region_addresses or {}).items())) \
        or "none in the inventory"


def _primary_values(info):
    for row in info.get("servers") or []:
        if row.get("values") is not None and not row.get("error"):
            return sorted(row["values"])
    api = info.get("api") or {}
    return sorted(api.get("values") or [])


def end_state(after, plan):
    """Whether every record's servers agree on its target: ok and problems."""
    by_name = dict((info["name"], info) for info in after)
    problems = []
    for rec in plan.get("records") or []:
        info = by_name.get(rec["name"]) or {}
        if not info.get("agree"):
            problems.append("%s: %s" % (rec["name"], info.get("disagreement") or "not read"))
        elif sorted(info.get("agreed_values") or []) != rec["target"]:
            problems.append("%s answers %s everywhere, expected %s" % (rec["name"], info.get("agreed_values"),
                                                                       rec["target"]))
    return dict(ok=not problems, problems=problems)


def summary(plan, change, end, completed=False, check_mode=False, run_id=None, lock=None):
    """The runbook's published summary: per record previous and new values, per-server answer times, whether
    the change was applied (a failed verification after the change says the primary already changed), the
    rollback command."""
    results = dict((r.get("name"), r) for r in ((change or {}).get("results") or []) if r.get("name"))
    records, did = [], []
    for rec in (plan or {}).get("records") or []:
        result = results.get(rec["name"]) or {}
        previous = result.get("previous") or dict(values=rec["current"], ttl=rec.get("ttl"))
        applied = bool(result.get("applied"))
        verification = result.get("verification") or {}
        row = dict(name=rec["name"], previous=dict(values=previous.get("values"), ttl=previous.get("ttl")),
                   new=dict(values=rec["target"]), applied=applied, verified=bool(result.get("verified")),
                   servers=[dict(name=s.get("name"), values=s.get("values"), answered_in_ms=s.get("answered_in_ms"),
                                 visible_after_s=s.get("visible_after_s"), error=s.get("error"))
                            for s in verification.get("servers") or []],
                   stale_servers=verification.get("stale_servers") or [], error=result.get("msg"))
        records.append(row)
        if applied:
            unverified = "" if row["verified"] else " at the primary, NOT verified everywhere (%s)" % (
                ", ".join(row["stale_servers"]) or "see the error")
            did.append("%s changed from %s to %s%s" % (
                rec["name"], row["previous"]["values"], rec["target"], unverified))
    applied = [r for r in records if r["applied"]]
    plan = plan or {}
    details = dict(target=plan.get("target"), rollback_of=plan.get("rollback_of"), records=records,
                   warnings=plan.get("warnings") or [],
                   primary_already_changed=bool([r for r in applied if not r["verified"]]))
    # A cutover is undone by the next one (the rollback commands below): the runbook declares no point of no return.
    return envelope("dns_cutover", action=plan.get("action"), reason=plan.get("reason"), completed=completed,
                    check_mode=check_mode, did=did, end=end or None, lock_key=(lock or {}).get("key"),
                    rollback=_rollback_commands(applied, run_id), passed_point_of_no_return=False,
                    details=details, serving=_serving(records), plan=_confirmation(plan) if check_mode else None)


def _confirmation(plan):
    """What the plan shows before the confirmation, and the values the confirmed run guards on (docs/dns.md)."""
    if plan.get("action") not in ("change", "none"):
        return None
    changing = any(rec["change"] for rec in plan.get("records") or [])
    return confirmation(
        will_change=will_change(plan),
        guard=("once confirmed, the run refuses, changing nothing, if a record no longer holds the value shown here"
               if changing else None),
        confirm_guard={CONFIRMED: dict((rec["name"], rec["expected"]) for rec in plan["records"])})


def _serving(records):
    """What each record answered before the run and answers after it (the previous values where not applied)."""
    if not records:
        return None
    before = dict((r["name"], r["previous"]["values"]) for r in records)
    after = dict((r["name"], r["new"]["values"] if r["applied"] else r["previous"]["values"]) for r in records)
    return served(before, after)


def will_change(plan):
    """The plan in sentences, one per record: old -> new values with the TTL (the terminal shows them before the
    confirmation, as every runbook's `will_change`)."""
    rdtype = plan.get("type") or "A"
    lines = []
    for rec in plan.get("records") or []:
        ttl = " TTL %ss" % rec["ttl"] if rec.get("ttl") else ""
        if rec["change"]:
            lines.append("%s %s%s: %s -> %s" % (rec["name"], rdtype, ttl, _listed(rec["current"]),
                                                _listed(rec["target"])))
        else:
            lines.append("%s %s%s already holds %s: unchanged" % (rec["name"], rdtype, ttl, _listed(rec["target"])))
    return lines


def _listed(values):
    return ", ".join(values) if values else "(no record)"


def _rollback_commands(applied, run_id):
    if not applied:
        return []
    commands = []
    if run_id:
        commands.append("runbook run dns_cutover -e rollback_of=%s" % run_id)
    groups = {}
    for rec in applied:
        key = (tuple(rec["previous"]["values"] or []), tuple(rec["new"]["values"] or []))
        groups.setdefault(key, []).append(rec["name"])
    for (previous, new), names in sorted(groups.items()):
        commands.append("runbook run dns_cutover -e records=%s -e values=%s -e expected_values=%s"
                        % (",".join(names), ",".join(previous), ",".join(new)))
    return commands
