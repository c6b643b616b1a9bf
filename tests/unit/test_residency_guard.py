"""The data-residency guard (plugins/module_utils/_region/residency.py): a pure decision on inventory data."""

from __future__ import annotations

from erlmcp_dr import paths
from erlmcp_dr.lab import residency as lab_residency

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._region import residency  # noqa: E402

REGIONS = lab_residency.inventory_vars()["dr_regions"]


def datasets(**classes: str) -> dict:
    return {name: {"class": data_class} for name, data_class in classes.items()}


def test_the_lab_datasets_may_move_between_every_region() -> None:
    lab = lab_residency.inventory_vars()
    for region in ("a", "b", "c"):
        verdict = residency.check(region, lab["dr_regions"], lab["dr_datasets"], lab["dr_residency_rules"])
        assert verdict.allowed and not verdict.refusals, verdict.message


def test_pii_to_the_us_is_refused_naming_dataset_class_rule_and_jurisdiction() -> None:
    verdict = residency.check("b", REGIONS, datasets(customers="PII", cards="PCI"))
    assert not verdict.allowed
    assert verdict.refusals == ["dataset customers (class PII) must stay in EU (rule PII -> EU), and region b is in US"]
    assert "residency_override" in verdict.message and "Nothing was changed" in verdict.message


def test_phi_to_the_eu_is_refused_and_pci_goes_either_way() -> None:
    assert not residency.check("a", REGIONS, datasets(records="PHI")).allowed
    assert residency.check("a", REGIONS, datasets(cards="PCI")).allowed
    assert residency.check("b", REGIONS, datasets(cards="PCI", records="PHI")).allowed


def test_an_override_needs_a_written_justification_and_is_returned_for_the_audit_trail() -> None:
    short = residency.check("b", REGIONS, datasets(customers="PII"), justification="ok")
    assert not short.allowed and "needs at least" in short.message
    reason = "Legal (ticket LEGAL-42) approved serving EU customers from the US for this outage"
    granted = residency.check("b", REGIONS, datasets(customers="PII"), justification=reason)
    assert granted.allowed and granted.overridden and granted.justification == reason
    assert granted.to_dict()["justification"] == reason and "overridden" in granted.message


def test_what_the_guard_cannot_decide_is_refused_and_never_overridable() -> None:
    reason = "a long enough justification that should not matter here"
    unknown_region = residency.check("z", REGIONS, datasets(cards="PCI"), justification=reason)
    assert not unknown_region.allowed and "region 'z' has no jurisdiction" in unknown_region.message
    no_class = residency.check("a", REGIONS, {"blob": {}}, justification=reason)
    assert not no_class.allowed and "dataset 'blob' has no class" in no_class.message
    no_rule = residency.check("a", REGIONS, datasets(x="SECRET"), justification=reason)
    assert not no_rule.allowed and "no residency rule" in no_rule.message
    assert not residency.check("a", REGIONS, {}).allowed


def test_the_inventory_rules_replace_the_seeds_defaults() -> None:
    assert residency.check("b", REGIONS, datasets(customers="PII"), rules={"PII": ["EU", "US"]}).allowed
