"""region_health's decisions, pure (module_utils/_region/verdicts.py): every region verdict, the split of two
writers (issue 16 row 4), and the table drawn from the summary (issue 15 item 5). No server."""

from __future__ import annotations

from typing import Any

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._region import verdicts as regions  # noqa: E402


def _row(host: str, region: str, component: str, verdict: str = "healthy", **extra: Any) -> dict[str, Any]:
    row = dict(host=host, region=region, component=component, verdict=verdict, confirmed=True,
               target=f"127.0.0.1:{len(host)}", samples=2, failures=0, latency_ms=1.25, role=None, writable=None,
               status=None, error=None)
    row.update(extra)
    return row


def _lab(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    """Three regions, each an app, a database and a Redis node; pg-a writable and redis-a primary."""
    rows = []
    for region in "abc":
        rows += [_row(f"app-{region}", region, "app", status=200),
                 _row(f"pg-{region}", region, "database", writable=region == "a"),
                 _row(f"redis-{region}", region, "redis", role="primary" if region == "a" else "replica")]
    for row in rows:
        row.update(changes.get(row["host"], {}))
    return rows


def test_every_part_healthy_is_a_healthy_region():
    found = regions.summary(_lab())
    assert found["regions"] == {"a": "healthy", "b": "healthy", "c": "healthy"}
    assert found["healthy_regions"] == ["a", "b", "c"] and found["failed_regions"] == [] and found["splits"] == []
    assert found["reasons"] == {}


def test_a_failed_part_fails_its_region_only_and_says_why():
    found = regions.summary(_lab(**{"pg-a": dict(verdict="failed", error="connection refused", writable=None)}))
    assert found["regions"] == {"a": "failed", "b": "healthy", "c": "healthy"}
    assert found["failed_regions"] == ["a"]
    assert found["reasons"]["a"] == ["database on pg-a failed: connection refused"]


def test_a_flapping_part_makes_the_region_flapping_unless_another_part_failed():
    found = regions.summary(_lab(**{"app-b": dict(verdict="flapping", error="HTTP 503")}))
    assert found["regions"]["b"] == "flapping" and found["flapping_regions"] == ["b"]
    both = regions.summary(_lab(**{"app-b": dict(verdict="flapping"), "redis-b": dict(verdict="failed")}))
    assert both["regions"]["b"] == "failed"


def test_two_redis_primaries_are_a_split_that_fails_both_regions_naming_both():
    found = regions.summary(_lab(**{"redis-b": dict(role="primary")}))
    assert found["regions"] == {"a": "failed", "b": "failed", "c": "healthy"}
    assert [split["hosts"] for split in found["splits"]] == [["redis-a", "redis-b"]]
    message = found["splits"][0]["message"]
    assert message.startswith("split: Redis primaries take writes at once") and "redis-a" in message
    assert "redis-b" in message and message in found["reasons"]["a"] and message in found["reasons"]["b"]
    assert found["table"][-1] == "FAILED  " + message


def test_two_writable_postgresql_servers_are_a_split_too():
    found = regions.summary(_lab(**{"pg-c": dict(writable=True)}))
    assert found["regions"] == {"a": "failed", "b": "healthy", "c": "failed"}
    assert found["splits"][0]["component"] == "database" and found["splits"][0]["hosts"] == ["pg-a", "pg-c"]


def test_two_primaries_in_one_region_fail_that_region():
    found = regions.summary(_lab(**{"redis-b": dict(region="a", role="primary")}))
    assert found["regions"]["a"] == "failed" and found["regions"]["b"] == "healthy"


def test_an_unreachable_old_primary_is_no_split():
    found = regions.summary(_lab(**{"redis-a": dict(role=None, verdict="failed", error="refused"),
                                    "redis-b": dict(role="primary")}))
    assert found["splits"] == [] and found["regions"]["b"] == "healthy" and found["regions"]["a"] == "failed"


def test_the_table_shows_each_part_its_state_latency_and_problem():
    found = regions.summary(_lab(**{"app-a": dict(verdict="failed", confirmed=False, status=503, error="HTTP 503",
                                                  latency_ms=None, target="http://" + "x" * 40)}))
    table = found["table"]
    assert table[0].split()[:3] == ["region", "verdict", "part"]
    first = table[1]
    assert first.startswith("a       failed    app ") and "HTTP 503" in first and first.endswith(
        "  failed (unconfirmed): HTTP 503")
    assert "~" in first and " - " in first  # a long target cut, no latency
    assert table[2].startswith("                  database  pg-a") and "writable" in table[2] and "1.2 ms" in table[2]
    assert "replica" in table[6] and len(table) == 10


def test_rows_come_from_each_hosts_registered_checks_once_skipped_ones_left_out():
    hostvars = {
        "pg-a": {"dr_region": "a", "region_health_checks": {"results": [
            {"item": {"component": "database"}, "verdict": "healthy", "confirmed": True, "target": "t",
             "sample_count": 2, "failures": 0, "last_error": None,
             "samples": [{"latency_ms": 3.0, "writable": True}]}]}},
        "redis-b": {"dr_region": "b", "region_health_checks": {"results": [{"skipped": True, "item": {}}]}},
    }
    rows = regions.rows(["pg-a", "redis-b", "pg-a"], hostvars)
    assert rows == [dict(host="pg-a", region="a", component="database", verdict="healthy", confirmed=True,
                         target="t", samples=2, failures=0, latency_ms=3.0, role=None, writable=True, status=None,
                         error=None)]
