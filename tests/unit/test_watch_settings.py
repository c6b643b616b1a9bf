"""`runbook watch`'s settings from the inventory (src/erlmcp_dr/watch/settings.py), its count of consecutive checks,
its etcd key range and the regional write guard's decision (watch/guard.py): bad input is refused naming the
variable, what was found and what is expected."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from erlmcp_dr.errors import ParameterError
from erlmcp_dr.watch import cli as watch_cli
from erlmcp_dr.watch.board import _lock_etcd
from erlmcp_dr.watch.guard import FENCE, HOLD
from erlmcp_dr.watch.guard import decide as guard_decide
from erlmcp_dr.watch.observer import Count, Observer
from erlmcp_dr.watch.settings import parse

ENDPOINTS = ["http://127.0.0.1:2379", "http://127.0.0.1:2381", "http://127.0.0.1:2383"]
OBSERVERS = [{"name": "obs-a", "region": "a"}, {"name": "obs-b", "region": "b"}, {"name": "witness"}]


def variables(**watch: Any) -> dict[str, Any]:
    return {"dr_watch": {"observers": OBSERVERS, "failover_to": {"a": "b"}, **watch},
            "dr_lock_etcd_endpoints": ENDPOINTS}


def test_the_inventory_declares_a_static_membership_targets_and_bands():
    settings = parse(variables(interval=1, carry_on_seconds=2, fail_over_seconds=4))
    assert settings.membership.observers == ("obs-a", "obs-b", "witness") and settings.membership.majority == 2
    assert settings.membership.region_of("witness") is None and settings.failover_to == {"a": "b"}
    assert (settings.bands.carry_on_seconds, settings.bands.fail_over_seconds) == (2, 4)
    assert settings.bands.consecutive_checks == 3 and settings.etcd["endpoints"] == ENDPOINTS
    assert settings.lease_seconds == 5  # at least 5 s: a check slowed down by a busy controller does not drop them
    assert parse(variables(interval=4)).lease_seconds == 12  # three checks


def test_the_seeds_numbers_are_the_defaults():
    settings = parse(variables())
    assert settings.interval == 5 and settings.bands.consecutive_checks == 3
    assert (settings.bands.carry_on_seconds, settings.bands.fail_over_seconds) == (30, 60)


@pytest.mark.parametrize("change, parameter, words", [
    (lambda v: v.pop("dr_watch"), "dr_watch", "not set: expected a mapping with observers"),
    (lambda v: v["dr_watch"].update(observers=OBSERVERS[:2]), "dr_watch.observers", "at least 3 observers"),
    (lambda v: v["dr_watch"].update(observers=[*OBSERVERS[:2], {"name": "obs-a"}]), "dr_watch.observers",
     "must be distinct"),
    (lambda v: v["dr_watch"].update(observers="obs-a,obs-b"), "dr_watch.observers",
     "expected a list of {name, region}"),
    (lambda v: v["dr_watch"].update(failover_to={"a": "a"}), "dr_watch.failover_to", "another region"),
    (lambda v: v["dr_watch"].pop("failover_to"), "dr_watch.failover_to", "expected the regions watched"),
    (lambda v: v["dr_watch"].update(interval=0), "dr_watch.interval", "is 0: expected a number from 0.1 to 300"),
    (lambda v: v["dr_watch"].update(consecutive_checks=2.5), "dr_watch.consecutive_checks", "default 3"),
    (lambda v: v["dr_watch"].update(carry_on_seconds=90), "dr_watch.carry_on_seconds",
     "carry_on_seconds <= fail_over_seconds"),
    (lambda v: v["dr_watch"].update(prefix="watch"), "dr_watch.prefix", "starts and ends with /"),
    (lambda v: v.pop("dr_lock_etcd_endpoints"), "dr_lock_etcd_endpoints", "dr_lock_etcd_endpoints is empty"),
])
def test_bad_settings_are_refused_naming_the_variable(change, parameter, words, monkeypatch):
    monkeypatch.delenv("ERLMCP_DR_LOCK_ETCD_ENDPOINTS", raising=False)
    found = variables()
    change(found)
    with pytest.raises(ParameterError) as refused:
        parse(found)
    assert refused.value.parameter == parameter and words in str(refused.value)


def test_an_observer_outside_the_static_membership_is_refused_before_anything_starts():
    with pytest.raises(ParameterError) as refused:
        Observer(parse(variables()), "obs-c", Path("/nonexistent/inventory"))
    assert refused.value.parameter == "--name" and "obs-a, obs-b, witness" in str(refused.value)


def test_consecutive_checks_count_the_same_answer_and_restart_on_a_change():
    count = Count()
    seen = []
    for failed in (False, False, True, True, True, False, True):
        count.add(failed)
        seen.append((count.failed, count.consecutive))
    assert seen == [(False, 1), (False, 2), (True, 1), (True, 2), (True, 3), (False, 1), (True, 1)]


def test_the_key_range_covers_the_prefix_only():
    key_range = _lock_etcd().prefix_range("/erlmcp-dr/watch/")  # the range the board reads
    start, end = (base64.b64decode(key_range[name]).decode() for name in ("key", "range_end"))
    assert (start, end) == ("/erlmcp-dr/watch/", "/erlmcp-dr/watch0")
    assert start < "/erlmcp-dr/watch/verdicts/a/obs-a" < end


def test_the_text_report_says_automation_unavailable_and_each_regions_decision():
    down = {"observer": "obs-b", "at": "T", "status": "automation unavailable",
            "message": "automation unavailable: no etcd member answered with a quorum"}
    assert watch_cli.text(down) == "T obs-b automation unavailable: no etcd member answered with a quorum"
    ok = {"observer": "obs-b", "at": "T", "status": "ok", "regions": {"a": {
        "failed": True, "consecutive": 4, "decision": "fail_over", "reason": "2 of 3 observers say so",
        "trigger": "started regional_failover from a to b"}}}
    assert watch_cli.text(ok) == ("T obs-b region a: failed 4 check(s) -> fail_over: 2 of 3 observers say so; "
                                  "trigger: started regional_failover from a to b")


def test_the_write_guard_acts_before_the_majority_may_fail_over():
    settings = parse(variables(guard=True, interval=5))
    assert settings.guard and settings.guard_seconds == 25  # carry_on_seconds (30) - interval: strictly shorter
    assert parse(variables()).guard is False
    with pytest.raises(ParameterError) as refused:
        parse(variables(guard=True, guard_seconds=30))
    assert refused.value.parameter == "dr_watch.guard_seconds" and "below carry_on_seconds (30)" in str(refused.value)
    with pytest.raises(ParameterError) as refused:
        parse(variables(guard="yes"))
    assert refused.value.parameter == "dr_watch.guard" and "expected true or false" in str(refused.value)


@pytest.mark.parametrize("without, reached, total, action", [
    (10, 0, 2, HOLD),  # etcd reached 10 s ago: within guard_seconds, no peer is even asked
    (40, 1, 2, HOLD),  # etcd gone, but this region and one peer are 2 of 3: an etcd outage alone demotes nothing
    (40, 2, 2, HOLD),
    (40, 0, 2, FENCE),  # cut off from etcd and from both peers: the majority may fail over, stop taking writes
    (40, 1, 3, FENCE),  # 2 of 4 is no majority
    (40, 2, 3, HOLD),
])
def test_the_write_guard_fences_only_without_etcd_and_without_a_majority_of_the_databases(without, reached, total,
                                                                                           action):
    decision = guard_decide(without, 25, reached, total)
    assert decision.action == action, decision.reason
