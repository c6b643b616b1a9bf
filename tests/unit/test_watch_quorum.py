"""The automatic trigger's decision (src/erlmcp_dr/watch_quorum.py): quorum over STATIC membership and the partition
bands (<30 s carry on, 30-60 s the quorum decides with no dissent, >60 s the majority decides)."""

from __future__ import annotations

import pytest

from erlmcp_dr.watch_quorum import CARRY_ON, FAIL_OVER, WAIT, Bands, Membership, Verdict, decide

MEMBERS = Membership(("obs-a", "obs-b", "obs-c", "witness"), ("a", "b", "c", None))  # 4: majority 3
THREE = Membership(("obs-a", "obs-b", "witness"), ("a", "b", None))  # majority 2
INTERVAL = 5.0


def failed(observer: str, checks: int, region: str = "a") -> Verdict:
    return Verdict(observer, region, True, checks, INTERVAL)


def healthy(observer: str, region: str = "a") -> Verdict:
    return Verdict(observer, region, False, 10, INTERVAL)


def test_a_healthy_region_carries_on():
    assert decide(MEMBERS, "a", [healthy("obs-b"), healthy("obs-c"), healthy("witness")]).action == CARRY_ON


def test_the_isolated_minority_never_fails_over_however_long_it_sees_the_region_down():
    """An observer cut off from etcd and the others sees only its own verdict: it is never a majority."""
    for checks in (1, 7, 13, 1000):
        decision = decide(MEMBERS, "b", [failed("obs-a", checks, region="b")])
        assert decision.action == WAIT and "a majority (3) is needed" in decision.reason
    # Two of four is still not a majority of the static membership, even if those two are all it can reach.
    assert decide(MEMBERS, "b", [failed("obs-a", 100, "b"), failed("witness", 100, "b")]).action == WAIT


def test_observers_outside_the_static_membership_do_not_count():
    verdicts = [failed("obs-b", 20), failed("stranger-1", 20), failed("stranger-2", 20)]
    assert decide(MEMBERS, "a", verdicts).action == WAIT


@pytest.mark.parametrize("checks, expected", [
    (5, CARRY_ON),  # 25 s: under the 30 s band
    (6, FAIL_OVER),  # 30 s, no dissent: the quorum decides
    (12, FAIL_OVER),  # 60 s
    (13, FAIL_OVER),  # 65 s
])
def test_the_bands_without_dissent(checks, expected):
    verdicts = [failed("obs-b", checks), failed("obs-c", checks), failed("witness", checks)]
    assert decide(MEMBERS, "a", verdicts).action == expected


@pytest.mark.parametrize("checks, expected", [(6, WAIT), (12, WAIT), (13, FAIL_OVER)])
def test_a_dissenting_observer_outside_the_region_holds_the_middle_band_only(checks, expected):
    """3 of 4 say region a failed, obs-c still sees it healthy: a partition between observers until 60 s."""
    verdicts = [failed("obs-b", checks), failed("witness", checks), failed("obs-a", checks), healthy("obs-c")]
    decision = decide(MEMBERS, "a", verdicts)
    assert decision.action == expected and decision.dissent == ("obs-c",)


def test_the_failed_regions_own_observer_saying_healthy_is_not_dissent():
    """The observer inside region a may be the one cut off with it (or a stale local view): it is outvoted."""
    verdicts = [failed("obs-b", 7), failed("obs-c", 7), failed("witness", 7), healthy("obs-a")]
    assert decide(MEMBERS, "a", verdicts).action == FAIL_OVER


def test_fewer_than_n_consecutive_checks_is_not_a_failed_vote():
    bands = Bands(carry_on_seconds=10, fail_over_seconds=20, consecutive_checks=4)
    assert decide(THREE, "a", [failed("obs-b", 3), failed("witness", 3)], bands).action == WAIT
    assert decide(THREE, "a", [failed("obs-b", 4), failed("witness", 4)], bands).action == FAIL_OVER


def test_the_band_is_the_majoritys_count_not_the_longest():
    """One observer that saw it fail for long does not carry the others: the majority's shortest long run does."""
    verdicts = [failed("obs-b", 100), failed("obs-c", 3), failed("witness", 3)]
    assert decide(MEMBERS, "a", verdicts).action == CARRY_ON  # 15 s by the third vote


def test_the_latest_verdict_of_an_observer_wins():
    verdicts = [failed("obs-b", 20), failed("obs-c", 20), failed("witness", 20), healthy("obs-b")]
    assert decide(MEMBERS, "a", verdicts).action == WAIT


@pytest.mark.parametrize("members, regions, found", [
    (("a", "b"), ("a", "b"), "at least 3 observers"),
    (("a", "a", "w"), ("a", "b", None), "distinct"),
])
def test_a_bad_membership_is_a_clear_error(members, regions, found):
    with pytest.raises(ValueError, match=found):
        Membership(members, regions)


def test_bad_bands_are_a_clear_error():
    with pytest.raises(ValueError, match="carry_on_seconds <= fail_over_seconds"):
        Bands(carry_on_seconds=60, fail_over_seconds=30)
