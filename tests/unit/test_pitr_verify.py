"""pg_restore_verify's decisions that need no server (module_utils/_pitr/verify.py): the checks the inventory gives
are refused before anything is restored when they are not what is expected, where the verified-restore record is,
and how readiness reads its age."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import verify  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness_judge as judge  # noqa: E402


def test_checks_get_a_name_and_a_min_of_one_by_default() -> None:
    parsed = verify.parse_checks([
        {"query": "SELECT count(*) FROM orders"},
        {"name": "users", "query": "SELECT count(*) FROM users", "min": 10, "database": "app"},
    ])
    assert parsed == [
        {"name": "check 1", "query": "SELECT count(*) FROM orders", "min": 1, "database": None},
        {"name": "users", "query": "SELECT count(*) FROM users", "min": 10, "database": "app"},
    ]


@pytest.mark.parametrize(("checks", "says"), [
    (["SELECT 1"], "checks[0] is 'SELECT 1': expected a mapping with a query"),
    ([{"name": "x"}], "checks[0] is {'name': 'x'}: expected a mapping with a query"),
    ([{"query": "SELECT 1", "min": "ten"}], "min is 'ten'; expected a number"),
    ([{"query": "SELECT 1", "min": True}], "min is True; expected a number"),
    ([{"name": "a", "query": "SELECT 1"}, {"name": "a", "query": "SELECT 2"}], "the name 'a' is used twice"),
])
def test_a_malformed_check_is_refused_naming_it_and_the_parameter(checks: list, says: str) -> None:
    with pytest.raises(ModuleFailure, match="checks") as failure:
        verify.parse_checks(checks)
    assert says in str(failure.value)


def test_a_malformed_check_is_refused_before_anything_is_restored(tmp_path: Path) -> None:
    # No stanza, no server, no scratch: the checks are read first, so nothing else is even looked at.
    params = {"checks": [{"query": ""}], "stanza": "nosuch", "config": str(tmp_path / "pgbackrest.conf"),
              "scratch_dir": str(tmp_path / "scratch")}
    with pytest.raises(ModuleFailure, match=r"checks\[0\]"):
        verify.run(params)
    assert list(tmp_path.iterdir()) == []


def test_the_record_lives_beside_the_config_named_by_the_stanza_unless_named() -> None:
    assert verify.record_path({"stanza": "main", "config": "/etc/pgbackrest/pgbackrest.conf"}) == \
        "/etc/pgbackrest/main.verified-restore.json"
    assert verify.record_path({"stanza": "main"}) == "/etc/pgbackrest/main.verified-restore.json"
    assert verify.record_path({"stanza": "main", "config": "", "record": "/srv/proof.json"}) == "/srv/proof.json"


def test_readiness_reads_the_verified_restore_age_from_the_record(tmp_path: Path) -> None:
    settings = {"stanza": "main", "config": str(tmp_path / "pgbackrest.conf")}
    missing = readiness.verified_restore_status(settings, now=1000.0)
    assert missing["verified_restore_age_seconds"] is None and "run pg_restore_verify" in missing[
        "verified_restore_detail"]
    (tmp_path / "main.verified-restore.json").write_text(json.dumps(
        {"label": "20261206-100000F", "verified_at": 400.0, "verified_at_iso": "1970-01-01T00:06:40+00:00"}))
    found = readiness.verified_restore_status(settings, now=1000.0)
    assert found["verified_restore_age_seconds"] == 600.0 and "20261206-100000F" in found["verified_restore_detail"]
    limits = judge.thresholds({})
    fresh = judge.age_check("pg_restore_verified_age", 600.0, "pg_restore_verified_age_seconds", limits, "")
    stale = judge.age_check("pg_restore_verified_age", 2 * 86400.0, "pg_restore_verified_age_seconds", limits, "")
    assert (fresh["verdict"], stale["verdict"]) == ("pass", "fail")


def test_a_record_that_is_not_json_is_an_error_naming_it_not_never_verified(tmp_path: Path) -> None:
    record = tmp_path / "main.verified-restore.json"
    record.write_text("{half")
    with pytest.raises(ModuleFailure, match=f"{record} is not JSON"):
        verify.read_record(str(record))
    record.write_text("{}")
    with pytest.raises(ModuleFailure, match="has no verified_at"):
        verify.read_record(str(record))
