"""The cluster guard's decisions that need no server (plugins/module_utils/_guards/postgres_guard.py and the re-check in
_promote.check_guard); the racing runs on the lab are in tests/integration/test_cluster_guard.py."""

from __future__ import annotations

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._guards import postgres_guard as guard  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.promote import Refused, check_guard  # noqa: E402

MEMBERS = [{"name": "pg-a", "host": "10.0.0.1", "port": 5432}, {"name": "pg-b", "host": "10.0.0.2", "port": 5432},
           {"name": "pg-c", "host": "10.0.0.3", "port": 5432}]
STOPPED = {"method": "stop", "done": True}


class Member:
    """A member's connection that answers the guard's pg_locks query: granted to `holder` (an application_name)."""

    def __init__(self, holder: str | None) -> None:
        self.holder = holder

    def execute(self, _sql: str, args: tuple) -> Member:
        self.count = int(self.holder == args[2])
        return self

    def fetchone(self) -> dict:
        return {"n": self.count}


class Pool:
    def __init__(self, conns: dict) -> None:
        self.conns = conns


def params(token: str, held: list[str]) -> dict:
    return {"login_host": "10.0.0.2", "login_port": 5432, "primary_host": "10.0.0.1", "primary_port": 5432,
            "members": MEMBERS, "guard": {"token": token, "held": held}, "login_user": "postgres"}


def test_a_strict_majority_of_the_members():
    assert [guard.majority(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_the_token_names_the_run_within_application_names_63_bytes():
    run_id = "20261206T082125Z-database_failover-c725"
    token = guard.new_token(run_id)
    assert token.startswith(run_id + "-") and len(guard.application_name(token)) <= 63
    assert guard.run_id_of(guard.application_name(token)) == run_id
    long = guard.new_token("x" * 80)
    assert len(guard.application_name(long)) <= 63 and "x" not in long
    assert guard.new_token(run_id) != token


def test_the_promotion_counts_the_candidate_a_member_and_the_old_primary_its_own_fence_stopped():
    token = guard.new_token("run-1")
    mine = guard.application_name(token)
    result = {"checks": []}
    check_guard(params(token, ["pg-a", "pg-b", "pg-c"]), Member(mine), result, STOPPED,
                Pool({("10.0.0.3", 5432): Member("erlmcp.dr.guard another")}))

    assert result["guard_members"] == ["pg-a", "pg-b"] and result["guard_token"] == token
    assert result["checks"][-1]["name"] == "cluster_guard" and result["checks"][-1]["ok"] is True


def test_a_run_whose_guard_is_on_a_minority_refuses_to_promote_with_no_override():
    token = guard.new_token("run-1")
    result = {"checks": []}
    with pytest.raises(Refused) as refused:
        # the old primary was not the guard's at the start: stopping it proves nothing about who holds it
        check_guard(params(token, ["pg-b", "pg-c"]), Member(guard.application_name(token)), result, STOPPED,
                    Pool({("10.0.0.3", 5432): Member("erlmcp.dr.guard another")}))

    message = str(refused.value)
    assert "cluster_guard" in message and "1 of 3 members" in message and "a majority (2)" in message
    assert "nothing was promoted" in message and "No override" in message
    assert "guard_token" not in result and result["checks"][-1]["ok"] is False


def test_without_a_guard_nothing_is_checked():
    result = {"checks": []}
    check_guard(dict(params("t", []), guard=None), Member(None), result, STOPPED, None)
    assert result == {"checks": []}


def test_a_holder_gives_up_at_once_when_another_run_holds_a_majority_and_retries_a_split():
    holder = guard.Holder({"members": [{"name": m["name"], "conn": {}} for m in MEMBERS], "token": "t"})
    other = [{"application_name": "erlmcp.dr.guard other", "client_addr": None, "since": ""}]
    holder.holders = {"pg-b": other, "pg-c": other}
    assert holder.other_holds_majority()
    holder.holders = {"pg-b": other, "pg-c": [dict(other[0], application_name="erlmcp.dr.guard third")]}
    assert not holder.other_holds_majority()
