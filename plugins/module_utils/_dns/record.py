# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of dns_record: a guarded change of one record set, verified at every authoritative server.

Order: parameters and values checked; the zone found (served by the server, or a hosted zone); the current
record set read (returned as `previous`); when it already holds the values, nothing changes (the verification
still runs, so a re-run converges); else the guard and CNAME rules are checked, then one guarded change is
made (RFC 2136 prerequisite / Route 53 DELETE+CREATE batch); Route 53's change is awaited until INSYNC; then
every authoritative server is asked until all answer the new values (Route 53 behind a stand-in that serves no
DNS: the record set is read back through the API, and `verification.method` says so).
"""

from __future__ import annotations

import time

from ansible_collections.erlmcp.dr.plugins.module_utils._dns import base as d
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import rfc2136 as rfc
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

DEFAULT_TTL = 300


class Rfc2136(object):
    method = "authoritative"

    def __init__(self, params, name, rdtype):
        self.params, self.name, self.rdtype = params, name, rdtype
        self.server = rfc.primary(params)
        self.where = d.endpoint(self.server)

    def prepare(self):
        d.zone_served(self.server, d.zone_name(self.params), self.params["timeout"])

    def read(self):
        return rfc.read(self.params, self.server, self.name, self.rdtype)

    def conflicts(self):
        return rfc.conflicts(self.params, self.server, self.name, self.rdtype)

    def change(self, values, ttl, expected, current):
        rcode = rfc.update(self.params, self.server, self.name, self.rdtype, values, ttl, expected)
        return rcode == "NOERROR", dict(rcode=rcode)

    def verify_servers(self):
        if self.params.get("servers"):
            return d.named(self.params["servers"])
        return d.ns_servers(self.server, d.zone_name(self.params), self.params["port"], self.params["timeout"])


class Route53(object):
    def __init__(self, params, name, rdtype):
        from ansible_collections.erlmcp.dr.plugins.module_utils._dns import route53 as r53

        self.r53 = r53
        self.params, self.name, self.rdtype = params, name, rdtype
        self.where = "Route 53"
        self.api = r53.client(params)
        self.zone_id, self.name_servers = None, []
        # Behind endpoint_url (a stand-in such as moto) no name server answers DNS: read back through the API.
        self.method = "authoritative" if params.get("servers") or not params.get("endpoint_url") else "api"

    def prepare(self):
        self.zone_id, self.name_servers = self.r53.hosted_zone(self.api, self.params)

    def read(self):
        return self.r53.read(self.api, self.zone_id, self.name, self.rdtype, d.zone_name(self.params))

    def conflicts(self):
        if self.rdtype == "CNAME":
            return [t for t in d.OTHER_TYPES if self.r53.read(self.api, self.zone_id, self.name, t,
                                                              d.zone_name(self.params))["exists"]]
        return ["CNAME"] if self.r53.read(self.api, self.zone_id, self.name, "CNAME",
                                          d.zone_name(self.params))["exists"] else []

    def change(self, values, ttl, expected, current):
        change_id, status = self.r53.change(self.api, self.zone_id, self.name, self.rdtype, values, ttl, expected,
                                            current)
        facts = dict(change_id=change_id, change_status=status)
        if self.params["wait"]:
            facts["insync_s"] = self.r53.wait_insync(self.api, change_id, self.params["wait_timeout"],
                                                     max(self.params["poll_interval"], 0.2))
            facts["change_status"] = "INSYNC"
        return True, facts

    def verify_servers(self):
        if self.params.get("servers"):
            return d.named(self.params["servers"])
        return [dict(name=ns.rstrip("."), host=ns.rstrip("."), port=53) for ns in self.name_servers]


def provider_for(params, name, rdtype):
    return Route53(params, name, rdtype) if params["provider"] == "route53" else Rfc2136(params, name, rdtype)


def _text(record, name, rdtype):
    if not record or not record["exists"]:
        return "(no %s record at %s)\n" % (rdtype, name)
    return "".join("%s %s IN %s %s\n" % (name, record["ttl"], rdtype, value) for value in record["values"])


def run(params, check_mode=False, diff=False, warn=None):
    """Make the record set hold params' values (or be absent), guarded, then verify; returns the result."""
    name, rdtype = d.fqdn(params), params["type"]
    facts = dict(changed=False, provider=params["provider"], zone=d.zone_name(params), name=name, type=rdtype,
                 previous=None, current=None, applied=False, verified=False, verification=None)
    where = "Route 53" if params["provider"] == "route53" else d.endpoint(rfc.primary(params))
    with d.translate_errors(facts, params, where=where):
        d.check_in_zone(params)
        present = params["state"] == "present"
        values = d.canonical_values(params.get("values"), rdtype, facts["zone"]) if present else []
        if present and not values:
            raise d.DnsError("state=present needs at least one value (values)", kind="invalid")
        if present and rdtype == "CNAME" and len(values) > 1:
            raise d.DnsError("a CNAME has exactly one value, got %d (values)" % len(values), kind="invalid")
        expected = None
        if params.get("expected_values") is not None:
            expected = d.canonical_values(params["expected_values"], rdtype, facts["zone"], option="expected_values")
        provider = provider_for(params, name, rdtype)
        provider.prepare()
        previous = provider.read()
        facts["previous"] = previous
        ttl = params.get("ttl") or previous["ttl"] or DEFAULT_TTL
        desired = d.rrset(values, ttl if present else None)
        done = previous["values"] == desired["values"] and (not present or previous["ttl"] == ttl)
        if diff:
            facts["diff"] = dict(before=_text(previous, name, rdtype), after=_text(desired, name, rdtype),
                                 before_header="%s %s (now)" % (name, rdtype),
                                 after_header="%s %s (%s)" % (name, rdtype, "unchanged" if done else "wanted"))
        if not done:
            _check_guard(expected, previous, name, rdtype, "")
            if present:
                _check_conflicts(provider, name, rdtype)
        if check_mode:
            facts.update(changed=not done, current=previous)
            return facts
        if not done:
            started = time.monotonic()
            applied, change_facts = provider.change(values, ttl, expected, previous)
            facts.update(change_facts)
            facts["change_seconds"] = round(time.monotonic() - started, 4)
            if not applied:  # the server checked the guard and refused: say what is there now
                _check_guard(expected, provider.read(), name, rdtype, " behind our back (the server checked the "
                             "guard and refused the update)")
                raise d.DnsError("%s refused the update (%s)" % (provider.where, change_facts), kind="guard")
            facts.update(applied=True, changed=True)
        facts["current"] = desired
    if params["wait"]:
        _verify(params, provider, facts, desired)
    return facts


def _check_guard(expected, current, name, rdtype, how):
    if expected is None or current["values"] == expected:
        return
    raise d.DnsError("the current value of %s %s changed%s: expected %s (expected_values), found %s now; nothing "
                     "was changed. Look at it, then give the value you now expect in expected_values"
                     % (name, rdtype, how, expected or "no record", current["values"] or "no record"), kind="guard")


def _check_conflicts(provider, name, rdtype):
    found = provider.conflicts()
    if not found:
        return
    if rdtype == "CNAME":
        raise d.DnsError("%s already holds other data (%s): a CNAME cannot stand beside other records (RFC 1034 "
                         "3.6.2); remove them first or choose another name (name, type)" % (name, ", ".join(found)),
                         kind="conflict")
    raise d.DnsError("%s is a CNAME: no %s record can stand beside it (RFC 1034 3.6.2); remove the CNAME first "
                     "(type CNAME, state absent) or choose another name (name)" % (name, rdtype), kind="conflict")


def _verify(params, provider, facts, desired):
    """Every authoritative server (or the API read-back) until it answers `desired`; facts['verification']."""
    try:
        with d.translate_errors(facts, params, where=provider.where):
            if provider.method == "api":
                facts["verification"] = _verify_api(params, provider, desired)
            else:
                servers = provider.verify_servers()
                facts["verification"] = dict(method="authoritative", servers=[], stale_servers=[])
                rows, waited = d.verify(servers, facts["name"], facts["type"], desired["values"], params["timeout"],
                                        params["wait_timeout"], params["poll_interval"], facts["verification"])
                facts["verification"] = dict(method="authoritative", servers=rows, waited_s=waited, stale_servers=[])
        facts["verified"] = True
    except ModuleFailure as exc:
        if not facts["applied"]:
            raise
        raise ModuleFailure("The change WAS applied: %s now holds %s (previous: %s), but %s" % (
            provider.where, desired["values"] or "no record", facts["previous"]["values"] or "no record", exc),
            **exc.facts) from None


def _verify_api(params, provider, desired):
    started = time.monotonic()
    try:
        last, waited = wait_for(lambda: provider.read()["values"] == desired["values"], params["wait_timeout"],
                                interval=max(params["poll_interval"], 0.2), what="the record set read back")
    except WaitTimeout:
        raise d.DnsError("verification failed after %ss (wait_timeout): Route 53 returns %s" % (
            params["wait_timeout"], provider.read()["values"]), kind="stale") from None
    return dict(method="api", servers=[], waited_s=round(waited, 4),
                note="the Route 53 endpoint (endpoint_url) serves no DNS: the record set was read back through the "
                     "API after %.3fs" % (time.monotonic() - started))
