"""dns_record and dns_info against a real Knot primary and secondary (RFC 2136, TSIG), and Route 53 (moto).

The engines run in this process (the modules' run(), the code under test, against real servers) for the
many bad inputs; the Ansible wiring (check mode, diff, no_log) runs through ansible-runner. Knot starts once
for the module (dns_lab); each test gets the zone as created (dns_zone: one UPDATE when a test changed it).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from runbook_helpers import dns_answers, dns_args, run_module

from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import info as _dns_info  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import record as _dns_record  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import rfc2136 as rfc  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.modules import dns_info as info_module  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.modules import dns_record as record_module  # noqa: E402

pytestmark = pytest.mark.integration

A, B, C = (lab_dns.REGION_ADDRESSES[r] for r in ("a", "b", "c"))
OTHER_SECRET = "b3RoZXIgc2VjcmV0LCBub3QgdGhlIGxhYidzIGtleQ=="


def _params(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """The engine's parameters as the module validates them (its argument spec and required_if)."""
    spec = module.argument_spec()
    result = ArgumentSpecValidator(spec, required_if=getattr(module, "REQUIRED_IF", None)).validate(args)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def record(check: bool = False, **args: Any) -> dict[str, Any]:
    """dns_record's engine; a failure comes back as its facts with failed=True and msg."""
    try:
        return _dns_record.run(_params(record_module, args), check_mode=check, diff=True)
    except ModuleFailure as exc:
        return dict(exc.facts, failed=True, msg=str(exc))


def info(**args: Any) -> dict[str, Any]:
    args = {key: value for key, value in args.items() if key in info_module.argument_spec()}
    return _dns_info.run(_params(info_module, args))


def everywhere(cfg: lab.LabConfig, name: str = "api") -> set[tuple[str, ...]]:
    return {tuple(values) for values in dns_answers(cfg, name).values()}


# ---------------------------------------------------------------- RFC 2136 on Knot


def test_guarded_cutover_is_verified_at_every_server_and_a_rerun_changes_nothing(dns_zone: lab.LabConfig) -> None:
    result = record(**dns_args(dns_zone, name="api", values=[B], expected_values=[A]))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["applied"] and result["verified"]
    assert result["previous"] == {"exists": True, "values": [A], "ttl": lab_dns.TTL}
    assert result["current"] == {"exists": True, "values": [B], "ttl": lab_dns.TTL}
    rows = result["verification"]["servers"]
    assert [row["name"] for row in rows] == ["dns-primary", "dns-secondary"]
    assert all(row["values"] == [B] and row["authoritative"] and row["visible_after_s"] is not None for row in rows)
    assert everywhere(dns_zone) == {(B,)}

    again = record(**dns_args(dns_zone, name="api", values=[B], expected_values=[A]))
    assert not again.get("failed"), again.get("msg")
    assert not again["changed"] and not again["applied"] and again["verified"]

    back = record(**dns_args(dns_zone, name="api", values=result["previous"]["values"],
                             ttl=result["previous"]["ttl"], expected_values=[B]))
    assert back["changed"] and back["previous"]["values"] == [B]
    assert everywhere(dns_zone) == {(A,)}


@pytest.mark.parametrize(("change", "expect"), [
    ({"tsig_key_secret": OTHER_SECRET}, "rejected the signature made with TSIG key 'erlmcp-lab-key.'"),
    ({"tsig_key_name": "someone-else."}, "does not know the TSIG key 'someone-else.'"),
    ({"tsig_key_name": None, "tsig_key_secret": None}, "NOTAUTH"),
    ({"zone": "other.lab."}, "does not serve the zone other.lab."),
    ({"values": ["300.1.2.3"]}, "values[0] is '300.1.2.3', not a valid A value"),
    ({"expected_values": [C]}, f"expected ['{C}'] (expected_values), found ['{A}'] now; nothing was changed"),
    ({"type": "CNAME", "values": ["health"], "expected_values": None}, "already holds other data (A): a CNAME"),
])
def test_bad_input_is_a_clear_error_and_nothing_changes(dns_zone: lab.LabConfig, change: dict[str, Any],
                                                        expect: str) -> None:
    serial = lab_dns.serial_of(lab_dns.servers(dns_zone)[0])
    args = dict(dns_args(dns_zone, name="api", values=[B], expected_values=[A]), **change)
    result = record(**{key: value for key, value in args.items() if value is not None})
    assert result.get("failed"), result
    assert expect in result["msg"], result["msg"]
    assert not result["applied"] and not result["changed"]
    assert everywhere(dns_zone) == {(A,)}
    assert lab_dns.serial_of(lab_dns.servers(dns_zone)[0]) == serial  # not even a new serial


def test_a_record_beside_a_cname_is_refused(dns_zone: lab.LabConfig) -> None:
    made = record(**dns_args(dns_zone, name="www", type="CNAME", values=["api"], expected_values=[]))
    assert made["changed"] and made["current"]["values"] == ["api.erlmcp.lab."], made.get("msg")
    result = record(**dns_args(dns_zone, name="www", values=[B]))
    assert result.get("failed") and "www.erlmcp.lab. is a CNAME: no A record can stand beside it" in result["msg"]


def test_the_server_itself_checks_the_guard(dns_zone: lab.LabConfig) -> None:
    """The prerequisite travels in the UPDATE: a value changed between our read and our update is refused by Knot."""
    params = _params(record_module, dns_args(dns_zone, name="api", values=[C]))
    primary = rfc.primary(params)
    assert rfc.update(params, primary, "api.erlmcp.lab.", "A", [C], 30, [B]) == "NXRRSET"
    assert rfc.update(params, primary, "api.erlmcp.lab.", "A", [C], 30, []) == "YXRRSET"
    assert everywhere(dns_zone) == {(A,)}


def test_check_mode_and_diff_through_ansible_change_nothing_and_hide_the_secret(dns_zone: lab.LabConfig) -> None:
    result = run_module("erlmcp.dr.dns_record", dns_args(dns_zone, name="api", values=[B], expected_values=[A]),
                        check=True, diff=True)
    assert not result["failed"], result.get("msg")
    assert result["changed"] and not result["applied"]
    assert f"A {B}" in result["diff"]["after"] and f"A {A}" in result["diff"]["before"]
    assert lab_dns.TSIG_SECRET not in json.dumps(result)
    assert everywhere(dns_zone) == {(A,)}


def test_stopped_secondary_fails_verification_naming_it_and_says_the_primary_changed(dns_zone: lab.LabConfig) -> None:
    lab_dns.stop(lab_dns.server(dns_zone, "dns-secondary"))
    result = record(**dns_args(dns_zone, name="api", values=[B], expected_values=[A], timeout=0.3, wait_timeout=1))
    assert result.get("failed")
    assert result["applied"] and result["changed"] and not result["verified"]
    assert result["msg"].startswith("The change WAS applied"), result["msg"]
    assert "dns-secondary did not answer" in result["msg"]
    assert result["verification"]["stale_servers"] == ["dns-secondary"]
    assert lab_dns.answers(lab_dns.server(dns_zone, "dns-primary"), "api") == [B]

    seen = info(**dns_args(dns_zone, name="api", timeout=0.3))
    assert not seen["agree"] and seen["unanswered"] == ["dns-secondary"]


def test_dns_info_reports_every_server_and_their_agreement(dns_zone: lab.LabConfig) -> None:
    seen = info(**dns_args(dns_zone, name="health"))
    assert seen["agree"] and seen["agreed_values"] == [A] and seen["ttl"] == lab_dns.TTL
    assert len(seen["serials"]) == 1 and [row["name"] for row in seen["servers"]] == ["dns-primary", "dns-secondary"]


# ---------------------------------------------------------------- Route 53 (moto)


def _hosted_zone(endpoint: str) -> str:
    api = boto3.client("route53", endpoint_url=endpoint, region_name="us-east-1")
    zone_id = api.create_hosted_zone(Name="erlmcp.example.", CallerReference="erlmcp-dr-test")["HostedZone"]["Id"]
    api.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE",
        "ResourceRecordSet": {"Name": "api.erlmcp.example.", "Type": "A", "TTL": 30,
                              "ResourceRecords": [{"Value": "10.0.1.10"}]}}]})
    return zone_id


def r53(endpoint: str, **args: Any) -> dict[str, Any]:
    return dict({"provider": "route53", "zone": "erlmcp.example", "name": "api", "endpoint_url": endpoint,
                 "poll_interval": 0.2}, **args)


def test_route53_guarded_change_waits_insync_reads_back_and_is_idempotent(moto: str) -> None:
    _hosted_zone(moto)
    result = record(**r53(moto, values=["10.0.2.10"], expected_values=["10.0.1.10"]))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["verified"] and result["change_status"] == "INSYNC"
    assert result["verification"]["method"] == "api"
    assert result["previous"] == {"exists": True, "values": ["10.0.1.10"], "ttl": 30}
    again = record(**r53(moto, values=["10.0.2.10"], expected_values=["10.0.1.10"]))
    assert not again["changed"] and again["verified"]
    guarded = record(**r53(moto, values=["10.0.3.10"], expected_values=["10.0.1.10"]))
    assert guarded.get("failed") and "found ['10.0.2.10'] now; nothing was changed" in guarded["msg"]
    assert info(**r53(moto))["agreed_values"] == ["10.0.2.10"]


def test_route53_unknown_hosted_zone_is_a_clear_error(moto: str) -> None:
    result = record(**r53(moto, zone="nowhere.example", values=["10.0.2.10"]))
    assert result.get("failed") and "no hosted zone named nowhere.example." in result["msg"]
    result = record(**r53(moto, hosted_zone_id="Z0NOSUCHZONE", values=["10.0.2.10"]))
    assert result.get("failed") and "Route 53 has no hosted zone Z0NOSUCHZONE" in result["msg"], result["msg"]
