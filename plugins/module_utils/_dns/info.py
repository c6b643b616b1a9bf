# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of dns_info: what every authoritative server answers for a name (values, TTL, zone serial),
and whether they agree. Read-only; for Route 53 the record set held by the API is returned too."""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._dns import base as d
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import rfc2136 as rfc


def run(params, check_mode=False, diff=False, warn=None):
    name, rdtype = d.fqdn(params), params["type"]
    zone = d.zone_name(params)
    facts = dict(changed=False, provider=params["provider"], zone=zone, name=name, type=rdtype, servers=[],
                 agree=False, agreed_values=None, ttl=None, serials=[], unanswered=[], api=None, method=None)
    where = "Route 53" if params["provider"] == "route53" else d.endpoint(rfc.primary(params))
    with d.translate_errors(facts, params, where=where):
        d.check_in_zone(params)
        servers = _servers(params, facts, zone)
        rows = [d.ask(server, name, rdtype, params["timeout"], with_serial=True, zone=zone) for server in servers]
    facts["servers"] = rows
    facts["unanswered"] = [row["name"] for row in rows if row["error"]]
    answers = set(tuple(row["values"]) for row in rows if not row["error"])
    if facts["api"] is not None:
        answers.add(tuple(facts["api"]["values"]))
    facts["agree"] = not facts["unanswered"] and len(answers) == 1
    if facts["agree"]:
        facts["agreed_values"] = list(answers.pop())
        ttls = [row["ttl"] for row in rows] + ([facts["api"]["ttl"]] if facts["api"] else [])
        facts["ttl"] = max(t for t in ttls if t is not None) if any(t is not None for t in ttls) else None
    facts["serials"] = sorted(set(row.get("serial") for row in rows if row.get("serial") is not None))
    facts["disagreement"] = None if facts["agree"] else _disagreement(rows, facts["api"])
    return facts


def _servers(params, facts, zone):
    if params["provider"] == "route53":
        from ansible_collections.erlmcp.dr.plugins.module_utils._dns import route53 as r53

        api = r53.client(params)
        zone_id, name_servers = r53.hosted_zone(api, params)
        facts["api"] = r53.read(api, zone_id, facts["name"], facts["type"], zone)
        facts["hosted_zone_id"] = zone_id
        if params.get("servers"):
            facts["method"] = "authoritative"
            return d.named(params["servers"])
        if params.get("endpoint_url"):
            facts["method"] = "api"  # a stand-in (moto) serves no DNS
            return []
        facts["method"] = "authoritative"
        return [dict(name=ns.rstrip("."), host=ns.rstrip("."), port=53) for ns in name_servers]
    facts["method"] = "authoritative"
    if params.get("servers"):
        return d.named(params["servers"])
    if not params.get("server"):
        raise d.DnsError("name the authoritative servers (servers), or one server whose NS set names them (server)",
                         kind="invalid")
    return d.ns_servers(rfc.primary(params), zone, params["port"], params["timeout"])


def _disagreement(rows, api):
    parts = ["%s: %s" % (row["name"], row["error"] or (row["values"] or "no record")) for row in rows]
    if api is not None:
        parts.append("Route 53 API: %s" % (api["values"] or "no record"))
    return "; ".join(parts)
