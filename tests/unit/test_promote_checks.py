"""The promotion's checks (_promote.run_checks and its parts), decided from node facts alone: which checks refuse, which
`force` overrides and which it never does, and what the refusal says. No server: the lag gate is judged without a
catch-up (catchup_timeout 0), so no connection is opened."""

from __future__ import annotations

from typing import Any

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import promote  # noqa: E402

SYSID = "7300000000000000001"


def params(**overrides: Any) -> dict[str, Any]:
    values = dict(promote.defaults(), login_host="127.0.0.1", login_port=5433, login_user="postgres")
    values.update(overrides)
    return values


def candidate(**overrides: Any) -> dict[str, Any]:
    values = dict(system_identifier=SYSID, timeline=1, replay_paused=False, replay_lsn="0/3000000",
                  receive_lsn="0/3000100")
    values.update(overrides)
    return values


def old_primary(**overrides: Any) -> dict[str, Any]:
    values = dict(host="127.0.0.1", port=5432, reachable=True, role="primary", read_only=True,
                  system_identifier=SYSID, position_lsn="0/3000100", error=None)
    values.update(overrides)
    return values


def fence(**overrides: Any) -> dict[str, Any]:
    values = dict(method="read_only", done=False, as_if_fenced=False, final_lsn=None)
    values.update(overrides)
    return values


def checks_of(p: dict[str, Any], target: dict[str, Any], old: dict[str, Any] | None, fenced: dict[str, Any]):
    result: dict[str, Any] = {}
    checks = promote.run_checks(p, None, target, old, result, fenced)
    return checks, {c["name"]: c for c in checks.items}, result


def test_a_fenced_old_primary_with_a_caught_up_candidate_passes_and_measures_the_possible_loss():
    checks, by_name, result = checks_of(params(), candidate(), old_primary(), fence())
    assert checks.blocking() == []
    assert by_name["lag"]["ok"] and result["lag_bytes"] == 0x100 and result["lost_bytes_max"] == 0
    assert result["reference_lsn"] == "0/3000100"


def test_lag_over_the_budget_refuses_and_force_overrides_it():
    p = params(max_lag_bytes=16)
    checks, by_name, _ = checks_of(p, candidate(), old_primary(), fence())
    assert [c["name"] for c in checks.blocking()] == ["lag"]
    assert "at most 16 bytes (max_lag_bytes)" in checks.message("pg-b")
    assert "override: force, max_lag_bytes or catchup_timeout" in checks.message("pg-b")
    forced, _, _ = checks_of(dict(p, force=True), candidate(), old_primary(), fence())
    assert forced.blocking() == [] and forced.items[-1]["overridden"] is True


def test_another_clusters_candidate_is_refused_and_force_does_not_override_it():
    for p in (params(), params(force=True)):
        checks, _, _ = checks_of(p, candidate(system_identifier="999"), old_primary(), fence())
        assert [c["name"] for c in checks.blocking()] == ["system_identifier"], checks.items
        assert "(no override)" in checks.message("pg-b")


def test_an_old_primary_still_taking_writes_is_refused_unless_this_run_fences_it_first_in_check_mode():
    writing = old_primary(read_only=False)
    checks, _, _ = checks_of(params(force=True), candidate(), writing, fence())
    assert [c["name"] for c in checks.blocking()] == ["old_primary_fenced"]
    planned, by_name, _ = checks_of(params(), candidate(), writing, fence(as_if_fenced=True))
    assert planned.blocking() == [] and by_name["old_primary_fenced"]["ok"] is True


def test_paused_replay_is_refused_naming_how_to_resume_it():
    checks, _, _ = checks_of(params(), candidate(replay_paused=True), old_primary(), fence())
    assert "replay_not_paused" in [c["name"] for c in checks.blocking()]
    assert "pg_wal_replay_resume()" in checks.message("pg-b")


@pytest.mark.parametrize("vouch, ok", [
    ({}, False),
    ({"primary_confirmed_down": True}, True),
    ({"fence_command": "/bin/true"}, True),
])
def test_an_old_primary_that_cannot_be_asked_needs_someone_to_vouch_it_is_down_and_force_is_not_enough(vouch, ok):
    gone = old_primary(reachable=False, error="connection refused", position_lsn=None)
    checks, by_name, _ = checks_of(params(force=True, **vouch), candidate(), gone, fence())
    assert by_name["old_primary_state"]["ok"] is ok and by_name["old_primary_state"]["overridden"] is False
    assert by_name["system_identifier"]["ok"] is None  # not comparable: neither refuses nor passes
    assert bool(checks.blocking()) is not ok


def test_a_stop_fence_that_stopped_the_old_primary_vouches_for_it_and_its_final_lsn_is_the_reference():
    gone = old_primary(reachable=False, error="stopped", position_lsn=None)
    stopped = fence(method="stop", done=True, final_lsn="0/3000080")
    checks, by_name, result = checks_of(params(), candidate(), gone, stopped)
    assert checks.blocking() == [] and "lag" in by_name and result["reference_lsn"] == "0/3000080"
    no_lsn, by_name, _ = checks_of(params(), candidate(), gone, fence(method="stop", done=True))
    assert no_lsn.blocking() == [] and "stopped it" in by_name["old_primary_state"]["found"]


def test_expected_system_identifier_is_compared_when_the_old_primary_cannot_be_asked():
    gone = old_primary(reachable=False, error="down", position_lsn=None)
    p = params(expected_system_identifier="123", primary_confirmed_down=True)
    checks, _, _ = checks_of(p, candidate(), gone, fence())
    assert [c["name"] for c in checks.blocking()] == ["system_identifier"]
    assert "123 (expected_system_identifier)" in checks.message("pg-b")


def test_the_reference_is_the_furthest_of_the_old_primarys_position_and_the_final_lsn():
    assert promote.reference_lsn({"position_lsn": "0/5"}, "0/9") == "0/9"
    assert promote.reference_lsn({"position_lsn": "1/0"}, "0/9") == "1/0"
    assert promote.reference_lsn(None, None) is None
    assert promote.candidate_position({"receive_lsn": "0/20", "replay_lsn": "0/10"}) == 0x20
