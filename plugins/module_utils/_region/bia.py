# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Business impact analysis as pure functions: criticality, recovery strategy, tier objectives.

The seeds (SEEDS-CHECKLIST.md §11) describe these as code that takes strings where numbers are meant and leaves a
critical system with a long RTO without any recovery. Here every input carries its unit in its name (points,
minutes, seconds, currency per hour), anything that is not a number is refused naming the field, and every seed
contradiction is resolved in one place (docs/postmortem.md, "Seed contradictions").

Shared by the filter plugin plugins/filter/bia.py (erlmcp.dr.criticality, ...) and the controller's
src/erlmcp_dr/bia.py (`runbook bia`, the postmortem's verdicts): an installed collection never reads src/, so the
one implementation lives here. Standard library only, Python 3.8 syntax.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

# ---------------------------------------------------------------- criticality

# The four impact factors the seeds sum (S0:125-131), each scored in points from 0 to 100.
SCORE_FACTORS = ("revenue", "customer", "compliance", "operational")
MAX_FACTOR_POINTS = 100
# Lowest total score of each level, highest first (S0:127-131: >= 300 critical, >= 200 important, >= 100 standard).
LEVEL_THRESHOLDS = (("critical", 300), ("important", 200), ("standard", 100), ("non_essential", 0))
LEVELS = tuple(pair[0] for pair in LEVEL_THRESHOLDS)


class BiaError(ValueError):
    """Input a BIA function cannot use: the message names the field, what was found and what is expected."""


def number(value: Any, field: str, unit: str, minimum: float = 0.0, maximum: Optional[float] = None) -> float:
    """`value` as a float, or BiaError naming `field`: strings ("high", "24*60", even "60"), booleans, NaN,
    infinities and values out of [minimum, maximum] are refused, never coerced."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BiaError(f"{field}: found {value!r} ({type(value).__name__}), expected a number of {unit} "
                       "(write the number itself: a string such as 'high' or '24*60' is not read)")
    if math.isnan(value) or math.isinf(value):
        raise BiaError(f"{field}: found {value!r}, expected a finite number of {unit}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum:g} to {maximum:g}" if maximum is not None else f"at least {minimum:g}"
        raise BiaError(f"{field}: found {value!r}, expected {bounds} {unit}")
    return float(value)


def impact_score(scores: Mapping[str, Any], field: str = "scores") -> float:
    """The total impact score in points: revenue + customer + compliance + operational, each 0-100 points.

    Any other key is refused: `reputational` is listed by the seeds (S0:82) but never summed, and a factor that
    silently does nothing is worse than an error; `revenue_per_hour` is a currency amount, not a score (S0:147
    fed $1,000,000/h into a 100-300 scale), so it belongs in the service's own field, not here."""
    if not isinstance(scores, Mapping):
        raise BiaError(f"{field}: found {scores!r}, expected a mapping of {', '.join(SCORE_FACTORS)} to points "
                       f"(0-{MAX_FACTOR_POINTS} each)")
    unknown = sorted(str(key) for key in scores if key not in SCORE_FACTORS)
    if unknown:
        raise BiaError(f"{field}: unknown factor(s) {', '.join(unknown)}; expected only {', '.join(SCORE_FACTORS)} "
                       "(reputational impact is not summed: fold it into customer; revenue per hour is the "
                       "service's revenue_per_hour, not a score)")
    missing = [name for name in SCORE_FACTORS if name not in scores]
    if missing:
        raise BiaError(f"{field}: missing factor(s) {', '.join(missing)}; expected all of {', '.join(SCORE_FACTORS)} "
                       "(score an absent impact 0)")
    return sum(number(scores[name], f"{field}.{name}", "points", 0, MAX_FACTOR_POINTS) for name in SCORE_FACTORS)


def criticality(scores: Mapping[str, Any], field: str = "scores") -> str:
    """critical (>= 300 points), important (>= 200), standard (>= 100), else non_essential."""
    total = impact_score(scores, field)
    for level, lowest in LEVEL_THRESHOLDS:
        if total >= lowest:
            return level
    raise AssertionError("unreachable: the last threshold is 0 and scores are not negative")


# ---------------------------------------------------------------- recovery strategy

STRATEGIES = ("none", "cold", "warm", "hot")  # cheapest first
# The objectives each strategy is built to meet, in minutes (S0:1449-1451: hot 1 h / 5 min, warm 4 h / 1 h,
# cold 24 h / 24 h). One definition: the seeds' "important with <= 480 / <= 360 -> warm" (S0:231) is read as cold.
STRATEGY_BANDS = (("hot", 60, 5), ("warm", 240, 60), ("cold", 1440, 1440))
# The least a level gets whatever its objectives: the seeds' table let a critical system with RTO > 240 min fall
# through to "no recovery" (S0:226-237); a critical service keeps at least a warm standby, an important one at
# least a cold restore. Standard and non-essential services may have none when their objectives exceed a day.
LEVEL_FLOORS = {"critical": "warm", "important": "cold", "standard": "none", "non_essential": "none"}


def objectives_band(rto_minutes: float, rpo_minutes: float) -> str:
    """The cheapest strategy whose band holds both objectives (an objective exactly at an edge is inside it)."""
    for strategy, rto_limit, rpo_limit in STRATEGY_BANDS:
        if rto_minutes <= rto_limit and rpo_minutes <= rpo_limit:
            return strategy
    return "none"


def recovery_strategy(level: Any, rto_minutes: Any, rpo_minutes: Any, field: str = "service") -> str:
    """hot / warm / cold / none: what the objectives need (objectives_band), never less than the level's floor."""
    if level not in LEVEL_FLOORS:
        raise BiaError(f"{field}.level: found {level!r}, expected one of {', '.join(LEVELS)}")
    rto = number(rto_minutes, f"{field}.rto_minutes", "minutes")
    rpo = number(rpo_minutes, f"{field}.rpo_minutes", "minutes")
    needed = objectives_band(rto, rpo)
    floor = LEVEL_FLOORS[level]
    return max(needed, floor, key=STRATEGIES.index)


# ---------------------------------------------------------------- tier objectives

# One table (the seeds have three that disagree: S4:15-18, S3:148-181, S0:1449-1451). Tier 1 is MISSION's:
# RTO 5 min, RPO 1 s. Tiers 2-4 are S4's, the only seed table that gives RTO, RPO and availability together.
# Limits are maxima: an achieved value equal to the limit meets it (as reporting/report.py's "within the RTO target").
TIERS: Dict[int, Dict[str, float]] = {
    1: {"rto_seconds": 300, "rpo_seconds": 1, "availability_percent": 99.999},
    2: {"rto_seconds": 4 * 3600, "rpo_seconds": 30 * 60, "availability_percent": 99.99},
    3: {"rto_seconds": 8 * 3600, "rpo_seconds": 2 * 3600, "availability_percent": 99.9},
    4: {"rto_seconds": 24 * 3600, "rpo_seconds": 24 * 3600, "availability_percent": 99.0},
}
OBJECTIVE_UNITS = {"rto_seconds": "seconds", "rpo_seconds": "seconds", "availability_percent": "percent"}
DEFAULT_TIER = 1


def tier_objectives(tier: Any, overrides: Optional[Mapping[Any, Any]] = None,
                    field: str = "dr_tier_objectives") -> Dict[str, Any]:
    """{tier, rto_seconds, rpo_seconds, availability_percent, source} for `tier` (1-4, or one the overrides add):
    the built-in table, each value replaced by the inventory's `dr_tier_objectives[tier]` where it sets one."""
    if isinstance(tier, bool) or not isinstance(tier, int):
        raise BiaError(f"tier: found {tier!r} ({type(tier).__name__}), expected a tier number "
                       f"({', '.join(map(str, sorted(TIERS)))})")
    table = merged_tiers(overrides, field)
    if tier not in table:
        raise BiaError(f"tier: found {tier}, expected one of {', '.join(map(str, sorted(table)))} "
                       f"(add tier {tier} to {field} to define it)")
    return dict(table[tier], tier=tier)


def merged_tiers(overrides: Optional[Mapping[Any, Any]] = None,
                 field: str = "dr_tier_objectives") -> Dict[int, Dict[str, Any]]:
    """The whole table with the overrides applied; each row says where its values came from (`source`)."""
    table: Dict[int, Dict[str, Any]] = {tier: dict(row, source="built-in") for tier, row in TIERS.items()}
    if overrides is None:
        return table
    if not isinstance(overrides, Mapping):
        raise BiaError(f"{field}: found {overrides!r}, expected a mapping of tier number to "
                       "{rto_seconds, rpo_seconds, availability_percent}")
    for raw_tier, row in overrides.items():
        tier = _tier_key(raw_tier, field)
        where = f"{field}[{tier}]"
        if not isinstance(row, Mapping):
            raise BiaError(f"{where}: found {row!r}, expected a mapping of rto_seconds, rpo_seconds, "
                           "availability_percent")
        unknown = sorted(str(key) for key in row if key not in OBJECTIVE_UNITS)
        if unknown:
            raise BiaError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(OBJECTIVE_UNITS)}")
        base = table.get(tier)
        if base is None and set(row) != set(OBJECTIVE_UNITS):
            raise BiaError(f"{where}: a new tier needs all of {', '.join(OBJECTIVE_UNITS)}; found "
                           f"{', '.join(sorted(map(str, row))) or 'none'}")
        values = {key: number(value, f"{where}.{key}", OBJECTIVE_UNITS[key], 0,
                              100 if key == "availability_percent" else None) for key, value in row.items()}
        table[tier] = dict(base or {}, **values, source="inventory")
    return table


def _tier_key(raw: Any, field: str) -> int:
    # YAML mapping keys written `1:` load as int; `"1":` (or a JSON round trip) as str: both name tier 1
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    raise BiaError(f"{field}: found tier key {raw!r}, expected a tier number (1, 2, ...)")


def meets(achieved: Optional[float], limit: Optional[float]) -> Optional[bool]:
    """Whether an achieved RTO/RPO meets its limit (<=); None when either is unknown."""
    if achieved is None or limit is None:
        return None
    return achieved <= limit


# ---------------------------------------------------------------- degradation levels

DEGRADATION_LEVELS = ("normal", "reduced", "minimal", "emergency")  # best first
# S3:1730-1801, with one change: "normal" allowed 1 % of errors there; MISSION's error budget is < 0.1 % (S1:235),
# so normal needs an error rate below 0.001. Error rates are fractions (0.001 = 0.1 %), lag in milliseconds.
DEGRADATION_THRESHOLDS = {
    "normal": {"min_nodes": 3, "max_error_rate": 0.001, "max_lag_ms": 5000},
    "reduced": {"min_nodes": 2, "max_error_rate": 0.05, "max_lag_ms": None},
    "minimal": {"min_nodes": 1, "max_error_rate": None, "max_lag_ms": None},
}


def degradation_level(available_nodes, error_rate, replication_lag_ms, thresholds=None, field="degradation"):
    # type: (Any, Any, Any, Optional[Mapping[str, Mapping[str, Any]]], str) -> str
    """normal / reduced / minimal / emergency: the best level whose every threshold holds (a limit is exclusive:
    error rate and lag must be below it; nodes at least the minimum). `thresholds` replaces levels' limits."""
    nodes = number(available_nodes, field + ".available_nodes", "nodes")
    errors = number(error_rate, field + ".error_rate", "fraction of requests (0.001 = 0.1 %)", 0, 1)
    lag = number(replication_lag_ms, field + ".replication_lag_ms", "milliseconds")
    limits = dict((level, dict(row)) for level, row in DEGRADATION_THRESHOLDS.items())
    for level, row in (thresholds or {}).items():
        if level not in limits or not isinstance(row, Mapping):
            raise BiaError("%s.thresholds: found %r, expected a mapping of %s to limits"
                           % (field, level, ", ".join(limits)))
        for key, value in row.items():
            if key not in limits[level]:
                raise BiaError("%s.thresholds.%s: unknown limit %r; expected %s"
                               % (field, level, key, ", ".join(limits[level])))
            where = "%s.thresholds.%s.%s" % (field, level, key)
            limits[level][key] = None if value is None else number(value, where, "(nodes, fraction or milliseconds)")
    for level in DEGRADATION_LEVELS[:-1]:
        row = limits[level]
        if nodes < row["min_nodes"]:
            continue
        if row.get("max_error_rate") is not None and not errors < row["max_error_rate"]:
            continue
        if row.get("max_lag_ms") is not None and not lag < row["max_lag_ms"]:
            continue
        return level
    return "emergency"


# ---------------------------------------------------------------- the services of an inventory


def service_row(name: str, service: Any, overrides: Optional[Mapping[Any, Any]] = None) -> Dict[str, Any]:
    """One `dr_services` entry as a BIA row: score, level, objectives (the tier's, or its own rto_minutes /
    rpo_minutes), strategy, and the cost of an hour down when revenue_per_hour is given."""
    field = f"dr_services.{name}"
    if not isinstance(service, Mapping):
        raise BiaError(f"{field}: found {service!r}, expected a mapping with scores and tier")
    known = {"scores", "tier", "rto_minutes", "rpo_minutes", "revenue_per_hour", "currency", "description"}
    unknown = sorted(str(key) for key in service if key not in known)
    if unknown:
        raise BiaError(f"{field}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    score = impact_score(service.get("scores"), f"{field}.scores")
    level = criticality(service.get("scores"), f"{field}.scores")
    tier = service.get("tier", DEFAULT_TIER)
    objectives = tier_objectives(tier, overrides)
    rto_minutes = service.get("rto_minutes", objectives["rto_seconds"] / 60)
    rpo_minutes = service.get("rpo_minutes", objectives["rpo_seconds"] / 60)
    strategy = recovery_strategy(level, rto_minutes, rpo_minutes, field)
    revenue = service.get("revenue_per_hour")
    if revenue is not None:
        revenue = number(revenue, f"{field}.revenue_per_hour", "currency per hour")
    return {"service": name, "score_points": score, "level": level, "tier": tier,
            "rto_minutes": float(rto_minutes), "rpo_minutes": float(rpo_minutes), "strategy": strategy,
            "revenue_per_hour": revenue, "currency": str(service.get("currency") or ""),
            "objectives_from": "service" if "rto_minutes" in service or "rpo_minutes" in service else
            f"tier {tier} ({objectives['source']})"}


def services_table(services: Any, overrides: Optional[Mapping[Any, Any]] = None) -> List[Dict[str, Any]]:
    """Every `dr_services` entry as a row, most critical first (score, then name: a stable order)."""
    if not isinstance(services, Mapping):
        raise BiaError(f"dr_services: found {services!r}, expected a mapping of service name to "
                       "{scores, tier, ...}")
    rows = [service_row(str(name), service, overrides) for name, service in services.items()]
    return sorted(rows, key=_row_order)


def _row_order(row: Mapping[str, Any]) -> Tuple[float, str]:
    return (-row["score_points"], row["service"])
