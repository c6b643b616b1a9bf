"""The BIA functions (module_utils/_region/bia.py) at every edge: scores 99/100/199/200/299/300/301, RTO/RPO exactly at
each band's limit and one past it, the level floors (the seeds' "critical with RTO > 240 min gets no recovery"
hole), tier objectives and their overrides, and every kind of non-numeric input refused naming its field."""

from __future__ import annotations

import math

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._region import bia as _bia  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._region.bia import BiaError  # noqa: E402


def scores_totalling(total):
    """Four factors summing to `total` points (each at most 100)."""
    parts = []
    left = total
    for _ in range(4):
        part = min(100, left)
        parts.append(part)
        left -= part
    return dict(zip(_bia.SCORE_FACTORS, parts, strict=True))


@pytest.mark.parametrize(("total", "level"), [
    (0, "non_essential"), (99, "non_essential"), (99.5, "non_essential"), (100, "standard"),
    (199, "standard"), (200, "important"), (299, "important"), (299.99, "important"),
    (300, "critical"), (301, "critical"), (400, "critical"),
])
def test_criticality_at_each_threshold(total, level):
    assert _bia.criticality(scores_totalling(total)) == level
    assert _bia.impact_score(scores_totalling(total)) == total


@pytest.mark.parametrize(("level", "rto", "rpo", "strategy"), [
    # the bands: hot <= 60/5, warm <= 240/60, cold <= 1440/1440; an objective at the limit is inside
    ("standard", 60, 5, "hot"),
    ("standard", 60.001, 5, "warm"),
    ("standard", 60, 5.001, "warm"),
    ("standard", 0, 0, "hot"),
    ("standard", 240, 60, "warm"),
    ("standard", 241, 60, "cold"),
    ("standard", 240, 61, "cold"),
    ("standard", 1440, 1440, "cold"),
    ("standard", 1441, 1440, "none"),
    ("standard", 1440, 1441, "none"),
    ("non_essential", 1441, 1441, "none"),
    ("non_essential", 60, 5, "hot"),  # tight objectives need hot whatever the level says
    # the floors: critical never below warm (the seeds' hole), important never below cold
    ("critical", 60, 5, "hot"),
    ("critical", 240, 60, "warm"),
    ("critical", 241, 60, "warm"),
    ("critical", 10000, 10000, "warm"),
    ("important", 480, 360, "cold"),  # the seeds' "important <= 480/360 -> warm" read with warm's one definition
    ("important", 240, 60, "warm"),
    ("important", 1441, 1441, "cold"),
])
def test_recovery_strategy_at_each_edge(level, rto, rpo, strategy):
    assert _bia.recovery_strategy(level, rto, rpo) == strategy


def test_a_critical_service_with_an_rto_over_240_minutes_keeps_a_standby():
    """The seeds' table (S0:226-237) returned no_recovery here."""
    assert _bia.recovery_strategy("critical", 241, 5) != "none"


@pytest.mark.parametrize(("bad", "field"), [
    ({"revenue": "high", "customer": 10, "compliance": 10, "operational": 10}, "scores.revenue"),
    ({"revenue": "60", "customer": 10, "compliance": 10, "operational": 10}, "scores.revenue"),
    ({"revenue": 10, "customer": True, "compliance": 10, "operational": 10}, "scores.customer"),
    ({"revenue": 10, "customer": 10, "compliance": None, "operational": 10}, "scores.compliance"),
    ({"revenue": 10, "customer": 10, "compliance": 10, "operational": math.nan}, "scores.operational"),
    ({"revenue": 10, "customer": 10, "compliance": 10, "operational": -1}, "scores.operational"),
    ({"revenue": 101, "customer": 10, "compliance": 10, "operational": 10}, "scores.revenue"),
    ({"revenue": 10, "customer": 10, "compliance": 10}, "operational"),
    ({"revenue": 10, "customer": 10, "compliance": 10, "operational": 10, "reputational": 50}, "reputational"),
    ("critical", "scores"),
])
def test_criticality_refuses_what_is_not_four_scores_naming_the_field(bad, field):
    with pytest.raises(BiaError, match=field.replace(".", r"\.")):
        _bia.criticality(bad)


@pytest.mark.parametrize(("level", "rto", "rpo", "field"), [
    ("critical", "24*60", 5, "rto_minutes"),  # the seeds' `rto: 24*60`, a YAML string
    ("critical", 60, "5", "rpo_minutes"),
    ("critical", None, 5, "rto_minutes"),
    ("critical", 60, math.inf, "rpo_minutes"),
    ("critical", -1, 5, "rto_minutes"),
    ("critical", False, 5, "rto_minutes"),
    ("high", 60, 5, "level"),
])
def test_recovery_strategy_refuses_non_numbers_naming_the_field(level, rto, rpo, field):
    with pytest.raises(BiaError, match=field):
        _bia.recovery_strategy(level, rto, rpo)


def test_tier_1_is_the_missions_five_minutes_and_one_second():
    assert _bia.tier_objectives(1) == {"tier": 1, "rto_seconds": 300, "rpo_seconds": 1,
                                       "availability_percent": 99.999, "source": "built-in"}


def test_inventory_overrides_replace_only_what_they_set_and_may_add_a_tier():
    overrides = {1: {"rto_seconds": 120}, "5": {"rto_seconds": 1, "rpo_seconds": 0, "availability_percent": 100}}
    assert _bia.tier_objectives(1, overrides) == {"tier": 1, "rto_seconds": 120.0, "rpo_seconds": 1,
                                                  "availability_percent": 99.999, "source": "inventory"}
    assert _bia.tier_objectives(5, overrides)["rto_seconds"] == 1.0
    assert _bia.tier_objectives(2, overrides)["source"] == "built-in"


@pytest.mark.parametrize(("tier", "overrides", "field"), [
    ("1", None, "tier"),
    (9, None, "tier: found 9"),
    (1, {1: {"rto_seconds": "5 min"}}, r"dr_tier_objectives\[1\]\.rto_seconds"),
    (1, {1: {"rto": 5}}, r"unknown key\(s\) rto"),
    (1, {6: {"rto_seconds": 5}}, r"dr_tier_objectives\[6\]: a new tier needs all"),
    (1, {1: {"availability_percent": 101}}, "availability_percent"),
    (1, {"one": {"rto_seconds": 5}}, "tier key 'one'"),
])
def test_tier_objectives_refuse_bad_input_naming_the_field(tier, overrides, field):
    with pytest.raises(BiaError, match=field):
        _bia.tier_objectives(tier, overrides)


@pytest.mark.parametrize(("achieved", "limit", "met"), [
    (300, 300, True), (300.001, 300, False), (1, 1, True), (1.0001, 1, False), (None, 1, None), (0, 0, True),
])
def test_an_achieved_value_equal_to_its_limit_meets_it(achieved, limit, met):
    assert _bia.meets(achieved, limit) is met


@pytest.mark.parametrize(("nodes", "errors", "lag", "level"), [
    (3, 0.0, 0, "normal"),
    (3, 0.000999, 4999, "normal"),
    (3, 0.001, 0, "reduced"),  # MISSION's < 0.1 %, not the seeds' 1 %
    (3, 0.0, 5000, "reduced"),
    (2, 0.049, 10**6, "reduced"),
    (2, 0.05, 0, "minimal"),
    (1, 1.0, 10**6, "minimal"),
    (0, 0.0, 0, "emergency"),
])
def test_degradation_level_at_each_threshold(nodes, errors, lag, level):
    assert _bia.degradation_level(nodes, errors, lag) == level


def test_degradation_thresholds_are_parameters_and_checked():
    assert _bia.degradation_level(2, 0.0, 0, {"normal": {"min_nodes": 2}}) == "normal"
    with pytest.raises(BiaError, match=r"thresholds\.normal\.min_nodes"):
        _bia.degradation_level(2, 0.0, 0, {"normal": {"min_nodes": "two"}})
    with pytest.raises(BiaError, match="error_rate"):
        _bia.degradation_level(3, "1%", 0)


def test_a_service_row_takes_its_tiers_objectives_unless_it_sets_its_own():
    scores = {"revenue": 100, "customer": 100, "compliance": 60, "operational": 40}
    from_tier = _bia.service_row("sessions", {"scores": scores, "tier": 1})
    assert (from_tier["level"], from_tier["rto_minutes"], from_tier["strategy"]) == ("critical", 5.0, "hot")
    own = _bia.service_row("reports", {"scores": scores, "tier": 1, "rto_minutes": 480, "rpo_minutes": 360,
                                       "revenue_per_hour": 10000, "currency": "EUR"})
    assert (own["strategy"], own["objectives_from"], own["revenue_per_hour"]) == ("warm", "service", 10000.0)
    with pytest.raises(BiaError, match=r"dr_services\.reports\.revenue_per_hour"):
        _bia.service_row("reports", {"scores": scores, "revenue_per_hour": "$1M"})
    with pytest.raises(BiaError, match=r"dr_services\.reports: unknown key\(s\) rto"):
        _bia.service_row("reports", {"scores": scores, "rto": 5})
