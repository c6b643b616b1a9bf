"""The dns_cutover runbook through the `runbook` CLI, against the lab's real Knot primary and secondary.

Knot starts once for the module (dns_lab); every test gets the zone as created (dns_zone: api and health at
region a). What a run did is judged from the outside: what each server answers, asked directly.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import boto3
import pytest
import yaml
from runbook_helpers import (
    dns_answers,
    files_containing,
    inventory_copy,
    inventory_path,
    lock_held,
    run_json,
    runbook_cli,
    summary,
)

from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

A, B = lab_dns.REGION_ADDRESSES["a"], lab_dns.REGION_ADDRESSES["b"]


def answers(cfg: lab.LabConfig) -> dict[str, dict[str, list[str]]]:
    return {name: dns_answers(cfg, name) for name in lab_dns.RECORDS}


def everywhere(values: list[str]) -> dict[str, dict[str, list[str]]]:
    return {name: {srv: values for srv in lab_dns.SERVER_NAMES} for name in lab_dns.RECORDS}


def test_plan_then_cutover_reruns_clean_and_rolls_back_by_run_id(dns_zone: lab.LabConfig, home: Path) -> None:
    inventory = str(inventory_path(dns_zone))
    _, planned = run_json("plan", "dns_cutover", "-i", inventory, "-e", "region=b", expect_rc=0)
    assert summary(planned)["check_mode"] and summary(planned)["action"] == "change"
    assert summary(planned)["did"] == ["nothing was changed"] and answers(dns_zone) == everywhere([A])

    _, done = run_json("run", "dns_cutover", "-i", inventory, "-e", "region=b", "--yes", expect_rc=0)
    facts = summary(done)
    assert answers(dns_zone) == everywhere([B])
    assert facts["completed"] and facts["end_state"]["ok"] and not facts["primary_already_changed"]
    for rec in facts["records"]:
        assert rec["previous"]["values"] == [A] and rec["new"]["values"] == [B] and rec["verified"]
        assert [s["name"] for s in rec["servers"]] == list(lab_dns.SERVER_NAMES)
        assert all(s["visible_after_s"] is not None and s["answered_in_ms"] is not None for s in rec["servers"])
    assert facts["rollback"][0] == f"runbook run dns_cutover -e rollback_of={done['run_id']}"

    _, again = run_json("run", "dns_cutover", "-i", inventory, "-e", "region=b", "--yes", expect_rc=0)
    assert summary(again)["did"] == ["nothing was changed"]

    _, back = run_json("run", "dns_cutover", "-i", inventory, "-e", f"rollback_of={done['run_id']}", "--yes",
                       expect_rc=0)
    assert summary(back)["rollback_of"] == done["run_id"]
    assert answers(dns_zone) == everywhere([A])
    assert files_containing(home, lab_dns.TSIG_SECRET.encode()) == []  # no secret at rest in the run folders


def test_disagreeing_servers_refuse_and_forced_stale_secondary_says_the_primary_changed(
        dns_zone: lab.LabConfig, home: Path) -> None:
    # A stopped server's port drops UDP silently: each question to it waits the whole query timeout, so the timeout
    # is short; not so short that the running primary misses it on a loaded machine (0.3 s did, once, in CI beside
    # molecule's containers: the forced change was never sent).
    inventory = str(inventory_copy(dns_zone, "short-timeout", lambda data: data["all"]["vars"].update(dns_timeout=1.0)))
    lab_dns.stop(lab_dns.server(dns_zone, "dns-secondary"))
    cli, refused = run_json("run", "dns_cutover", "-i", inventory, "-e", "region=b", "--yes", expect_rc=1)
    assert "the authoritative servers disagree" in cli.stdout + cli.stderr
    assert summary(refused)["did"] == ["nothing was changed"]
    assert lab_dns.answers(lab_dns.server(dns_zone, "dns-primary"), "api") == [A]

    cli, forced = run_json("run", "dns_cutover", "-i", inventory, "-e", "region=b", "-e", "records=api",
                           "-e", "force=true", "-e", "wait_timeout=1", "--yes", expect_rc=1)
    facts = summary(forced)
    assert facts["primary_already_changed"], facts
    assert facts["records"][0]["applied"] and facts["records"][0]["stale_servers"] == ["dns-secondary"]
    assert "at the primary, NOT verified everywhere (dns-secondary)" in facts["did"][0]
    assert lab_dns.answers(lab_dns.server(dns_zone, "dns-primary"), "api") == [B]


def test_route53_cutover_through_the_api_with_an_explicit_guard(moto: str, home: Path, tmp_path: Path) -> None:
    """The Route 53 variant of the inventory (no dns group): moto serves no DNS, so the runbook verifies by reading
    the record set back; the guard given as a parameter travels to the change batch."""
    api = boto3.client("route53", endpoint_url=moto, region_name="us-east-1")
    zone_id = api.create_hosted_zone(Name="erlmcp.example.", CallerReference="erlmcp-dr-runbook")["HostedZone"]["Id"]
    api.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE",
        "ResourceRecordSet": {"Name": "api.erlmcp.example.", "Type": "A", "TTL": 30,
                              "ResourceRecords": [{"Value": "10.0.1.10"}]}}]})
    inventory = tmp_path / "route53.yml"
    inventory.write_text(yaml.safe_dump({"all": {"vars": {
        "dns_provider": "route53", "dns_zone": "erlmcp.example.", "dns_aws_endpoint_url": moto,
        "dns_records": ["api"], "dns_region_addresses": {"a": "10.0.1.10", "b": "10.0.2.10"},
        "dr_lock_dir": str(tmp_path / "locks")}}}))
    cli, wrong = run_json("run", "dns_cutover", "-i", str(inventory), "-e", "region=b",
                          "-e", "expected_values=10.0.3.10", "--yes", expect_rc=1)
    assert "expected ['10.0.3.10'] (expected_values), found ['10.0.1.10'] now" in cli.stdout + cli.stderr
    assert summary(wrong)["did"] == ["nothing was changed"]
    _, done = run_json("run", "dns_cutover", "-i", str(inventory), "-e", "region=b",
                       "-e", "expected_values=10.0.1.10", "--yes", expect_rc=0)
    record = summary(done)["records"][0]
    assert record["previous"]["values"] == ["10.0.1.10"] and record["verified"] and record["servers"] == []
    found = api.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName="api.erlmcp.example.",
                                          StartRecordType="A", MaxItems="1")["ResourceRecordSets"][0]
    assert found["ResourceRecords"] == [{"Value": "10.0.2.10"}]


def test_a_second_operator_on_a_locked_zone_exits_3_and_changes_nothing(dns_zone: lab.LabConfig, home: Path,
                                                                        tmp_path: Path) -> None:
    holder = "it-dns-holder-" + secrets.token_hex(3)
    with lock_held(dns_zone, f"dns:{lab_dns.ZONE}", holder, tmp_path):
        cli = runbook_cli("run", "dns_cutover", "-i", str(inventory_path(dns_zone)), "-e", "region=b", "--yes")
    assert cli.rc == 3, cli
    assert holder in cli.stderr, cli.stderr
    assert answers(dns_zone) == everywhere([A])
