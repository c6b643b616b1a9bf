"""_replication_info.summarize: the cluster read from each node's facts, decided without a server: the one writable
primary, a fenced primary, split brain, foreign nodes (another cluster's system identifier) left out of primaries
and standbys, upstreams matched by identity, lag measured against the one primary."""

from __future__ import annotations

from typing import Any

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import replication_info as info  # noqa: E402

SYSID = "7300000000000000001"
PORTS = {"pg-a": 5432, "pg-b": 5433, "pg-c": 5434}


def node(name: str, role: str = "standby", **overrides: Any) -> dict[str, Any]:
    facts: dict[str, Any] = dict(name=name, host="127.0.0.1", port=PORTS[name], reachable=True, error=None,
                                 error_kind=None)
    facts.update((key, None) for key in info.NODE_KEYS)
    primary = role == "primary"
    facts.update(role=role, in_recovery=not primary, system_identifier=SYSID, timeline=1, read_only=False,
                 writable=primary, current_lsn="0/3000100" if primary else None, replay_lsn=None if primary
                 else "0/3000000", receive_lsn=None if primary else "0/3000080", foreign=False,
                 replicas=[] if primary else None, cluster_name=name)
    if not primary:
        facts.update(upstream_host="127.0.0.1", upstream_port=PORTS["pg-a"], configured_upstream_host="127.0.0.1",
                     configured_upstream_port=PORTS["pg-a"])
    facts.update(overrides)
    return facts


def down(name: str) -> dict[str, Any]:
    facts = node(name)
    facts.update((key, None) for key in info.NODE_KEYS)
    facts.update(reachable=False, error="nothing is listening", error_kind="refused")
    return facts


def cluster(*nodes: dict[str, Any]) -> dict[str, Any]:
    return info.summarize({n["name"]: n for n in nodes})


def test_one_writable_primary_its_standbys_their_upstream_and_lag():
    got = cluster(node("pg-a", "primary"), node("pg-b"), node("pg-c"))
    assert got["primary"] == "pg-a" and got["primaries"] == ["pg-a"] and not got["split_brain"]
    assert got["standbys"] == ["pg-b", "pg-c"] and got["system_identifier"] == SYSID
    assert got["nodes"]["pg-b"]["upstream"] == "pg-a" and got["nodes"]["pg-b"]["configured_upstream"] == "pg-a"
    assert got["nodes"]["pg-b"]["lag_bytes"] == 0x100 and got["nodes"]["pg-b"]["receive_lag_bytes"] == 0x80


def test_two_writable_primaries_are_split_brain_with_no_primary_and_no_lag():
    got = cluster(node("pg-a", "primary"), node("pg-b", "primary"), node("pg-c"))
    assert got["split_brain"] and got["primary"] is None and got["primaries"] == ["pg-a", "pg-b"]
    assert got["nodes"]["pg-c"]["lag_bytes"] is None


def test_a_fenced_primary_is_not_a_writer_but_lag_is_measured_against_it():
    fenced = node("pg-a", "primary", writable=False, read_only=True)
    got = cluster(fenced, node("pg-b"))
    assert got["primary"] is None and got["fenced_primaries"] == ["pg-a"] and not got["split_brain"]
    assert got["nodes"]["pg-b"]["lag_bytes"] == 0x100


def test_a_node_of_another_cluster_is_foreign_and_left_out_of_primaries_and_standbys():
    stranger = node("pg-c", "primary", system_identifier="999")
    got = cluster(node("pg-a", "primary", writable=False, read_only=True), node("pg-b"), stranger)
    # the one writable node is the stranger: its identifier is taken as the cluster's, so the others are foreign
    assert got["system_identifier"] == "999" and got["foreign_nodes"] == ["pg-a", "pg-b"]
    assert not got["system_identifiers_agree"]
    majority = cluster(node("pg-a", "primary"), node("pg-b"), node("pg-c", system_identifier="999"))
    assert majority["foreign_nodes"] == ["pg-c"] and majority["standbys"] == ["pg-b"]
    assert majority["nodes"]["pg-c"]["foreign"] is True and majority["nodes"]["pg-c"]["lag_bytes"] is None


def test_an_unreachable_node_is_listed_and_a_standby_still_names_it_as_its_upstream():
    got = cluster(down("pg-a"), node("pg-b"), node("pg-c"))
    assert got["unreachable_nodes"] == ["pg-a"] and got["primary"] is None and got["standbys"] == ["pg-b", "pg-c"]
    assert got["nodes"]["pg-b"]["upstream"] == "pg-a"  # matched by host:port alone, it cannot say who it is


def test_nothing_reachable_has_no_cluster_identifier():
    got = cluster(down("pg-a"), down("pg-b"))
    assert got["system_identifier"] is None and got["primary"] is None and got["system_identifiers_agree"]
