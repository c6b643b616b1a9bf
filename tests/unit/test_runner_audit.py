"""What the runner hands the audit trail for a changed step: the diff as before/after, and the names a result
gives directly (from which the inventory hosts it acted on are picked)."""

from __future__ import annotations

from erlmcp_dr import runner, timeline


def test_before_after_from_an_erlmcp_module_diff_only() -> None:
    diff = {"diff": {"before": {"fenced": False}, "after": {"fenced": True}}}
    assert timeline.before_after("erlmcp.dr.pg_fence", diff) == {"before": {"fenced": False}, "after": {"fenced": True}}
    assert timeline.before_after("ansible.builtin.copy", diff) == {}
    looped = {"diff": [{"before": 1, "after": 2}, {"before": 3, "after": 4}]}
    assert timeline.before_after("erlmcp.dr.x", looped) == {"before": [1, 3], "after": [2, 4]}
    assert timeline.before_after("erlmcp.dr.x", {"diff": "text"}) == {}


def test_named_in_takes_direct_names_not_member_lists() -> None:
    res = {"node": "pg-a", "members": [{"name": "pg-b"}], "lsn": "0/30", "count": 3,
           "invocation": {"module_args": {"name": "pg-c", "nodes": ["pg-b"]}},
           "results": [{"item": "pg-d", "changed": True}, {"item": "pg-e", "changed": False}]}
    assert sorted(timeline.named_in(res)) == ["0/30", "pg-a", "pg-c", "pg-d"]


def test_the_operator_reaches_the_playbook_only_when_given(tmp_path) -> None:
    config = runner.RunConfig(runbook=None, inventory=tmp_path, extravars={"a": 1}, run_id="r", run_dir=tmp_path,
                              operator="alice")
    assert config.playbook_extravars()[runner.OPERATOR_VAR] == "alice"
    config.operator = None
    assert runner.OPERATOR_VAR not in config.playbook_extravars()
