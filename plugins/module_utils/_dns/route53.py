# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Route 53 through boto3: find the hosted zone, read a record set, change it guarded, wait for INSYNC.

The guard (`expected_values`) is one ChangeBatch that DELETEs exactly the expected record set and CREATEs the
new one: Route 53 applies a batch whole or not at all, and rejects a DELETE that does not match the current
record set exactly (InvalidChangeBatch), so a value changed behind our back changes nothing.
boto3 is imported only here, when Route 53 is called.
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._dns import base as d
from ansible_collections.erlmcp.dr.plugins.module_utils._common.aws import boto3_missing
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for


def client(params):
    try:
        import boto3
    except ImportError as exc:
        raise d.DnsError(boto3_missing("provider=route53", exc), kind="other") from None
    kwargs = dict(region_name=params.get("aws_region") or "us-east-1")
    for option, key in (("endpoint_url", "endpoint_url"), ("aws_access_key_id", "aws_access_key_id"),
                        ("aws_secret_access_key", "aws_secret_access_key"), ("aws_session_token", "aws_session_token")):
        if params.get(option):
            kwargs[key] = params[option]
    return boto3.client("route53", **kwargs)


def hosted_zone(api, params):
    """(hosted zone id, its name servers) for params' zone, by hosted_zone_id or by name; DnsError when there
    is no such zone, or several."""
    zone = d.zone_name(params)
    if params.get("hosted_zone_id"):
        found = api.get_hosted_zone(Id=params["hosted_zone_id"])
        name = found["HostedZone"]["Name"].lower()
        if name != zone:
            raise d.DnsError("the hosted zone %s is %s, not %s (hosted_zone_id, zone)"
                             % (params["hosted_zone_id"], name, zone), kind="notzone")
        return found["HostedZone"]["Id"], (found.get("DelegationSet") or {}).get("NameServers") or []
    listed = api.list_hosted_zones_by_name(DNSName=zone).get("HostedZones", [])
    matches = [z for z in listed if z["Name"].lower() == zone]
    if not matches:
        raise d.DnsError("this AWS account has no hosted zone named %s (zone; or give its id, hosted_zone_id)" % zone,
                         kind="notzone")
    if len(matches) > 1:
        raise d.DnsError("this AWS account has %d hosted zones named %s (%s): choose one (hosted_zone_id)"
                         % (len(matches), zone, ", ".join(z["Id"] for z in matches)), kind="invalid")
    zone_id = matches[0]["Id"]
    return zone_id, (api.get_hosted_zone(Id=zone_id).get("DelegationSet") or {}).get("NameServers") or []


def read(api, zone_id, name, rdtype, zone):
    """The record set as Route 53 holds it (rrset dict)."""
    found = api.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=name, StartRecordType=rdtype,
                                          MaxItems="1").get("ResourceRecordSets", [])
    for record in found:
        if d.absolute(record["Name"]).lower() == name and record["Type"] == rdtype:
            values = d.canonical_values([r["Value"] for r in record.get("ResourceRecords", [])], rdtype, zone)
            return d.rrset(values, record.get("TTL"))
    return d.rrset([], None)


def _record(action, name, rdtype, values, ttl):
    return dict(Action=action, ResourceRecordSet=dict(Name=name, Type=rdtype, TTL=int(ttl),
                                                      ResourceRecords=[dict(Value=v) for v in values]))


def change(api, zone_id, name, rdtype, values, ttl, expected, current):
    """One ChangeBatch: guarded (DELETE exactly `expected` + CREATE `values`) or not (UPSERT, or DELETE the
    current set). Returns the change's id and status."""
    changes = []
    if expected is not None:
        if expected:
            changes.append(_record("DELETE", name, rdtype, expected, current["ttl"] if current["ttl"] else ttl))
        if values:
            changes.append(_record("CREATE", name, rdtype, values, ttl))
    elif values:
        changes.append(_record("UPSERT", name, rdtype, values, ttl))
    else:
        changes.append(_record("DELETE", name, rdtype, current["values"], current["ttl"]))
    info = api.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch=dict(
        Comment="erlmcp.dr dns_record", Changes=changes))["ChangeInfo"]
    return info["Id"], info["Status"]


def wait_insync(api, change_id, timeout, interval):
    """Poll GetChange until INSYNC; returns the seconds waited. DnsError past the deadline."""
    try:
        waited = wait_for(lambda: api.get_change(Id=change_id)["ChangeInfo"]["Status"] == "INSYNC", timeout,
                          interval=interval, what="Route 53 change %s INSYNC" % change_id)[1]
    except WaitTimeout as exc:
        raise d.DnsError("%s (wait_timeout); the change was submitted and Route 53 will still apply it" % exc,
                         kind="timeout") from None
    return round(waited, 4)


def describe(exc, params):
    """One sentence for a boto3/botocore failure: what Route 53 said, and the option to change."""
    name = type(exc).__name__
    response = getattr(exc, "response", None) or {}
    code = (response.get("Error") or {}).get("Code") or name
    text = (response.get("Error") or {}).get("Message") or str(exc)
    zone = d.zone_name(params)
    if name == "NoCredentialsError":
        return d.DnsError("no AWS credentials found: give aws_access_key_id and aws_secret_access_key, or set them "
                          "in the environment or an AWS profile", kind="auth")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return d.DnsError("cannot reach the Route 53 endpoint (%s): %s (endpoint_url)" % (name, text), kind="timeout")
    if code == "NoSuchHostedZone":
        return d.DnsError("Route 53 has no hosted zone %s for %s: %s (hosted_zone_id, zone)"
                          % (params.get("hosted_zone_id") or "", zone, text), kind="notzone")
    if code == "InvalidChangeBatch":
        return d.DnsError("Route 53 rejected the change as a whole, so nothing changed: %s. The record set differs "
                          "from what the change expected (expected_values), or the values are not valid for the type "
                          "(values)" % text, kind="guard")
    if code in ("AccessDenied", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException"):
        return d.DnsError("AWS refused the credentials or the permission (%s): %s (aws_access_key_id, "
                          "aws_secret_access_key, or the IAM policy)" % (code, text), kind="auth")
    return d.DnsError("Route 53 error %s: %s" % (code, text), kind="other")
