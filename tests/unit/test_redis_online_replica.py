"""Before FAILOVER TO a candidate, redis_promote waits until the old primary lists it as an online replica
(module_utils/_redis/promote.py `_online_replica`): Redis refuses the command for a replica it lists in any other
state, which a replica whose link has just come up still is for a moment (CI saw "FAILOVER target replica is not
online" in a drill's restore). The integration tests of the hand-over run through it (test_redis_promote.py)."""

from __future__ import annotations

from typing import Any

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.promote import _online_replica  # noqa: E402

CANDIDATE = {"host": "127.0.0.1", "port": 16355}


class Primary:
    """An old primary's INFO replication, as redis-py parses it (slaveN entries are dicts)."""

    def __init__(self, **replicas: dict[str, Any]) -> None:
        self.replication = {"role": "master", "connected_slaves": len(replicas), **replicas}

    def info(self, section: str) -> dict[str, Any]:
        assert section == "replication"
        return self.replication


def test_the_candidate_listed_online_is_returned_with_the_address_the_primary_sees() -> None:
    primary = Primary(slave0={"ip": "127.0.0.1", "port": 16356, "state": "online", "offset": 5530, "lag": 0},
                      slave1={"ip": "10.0.0.2", "port": 16355, "state": "online", "offset": 5530, "lag": 0})
    assert _online_replica(primary, CANDIDATE) == {"host": "10.0.0.2", "port": 16355, "state": "online",
                                                  "offset": 5530, "lag": 0}


def test_a_candidate_still_syncing_or_missing_is_not_online() -> None:
    syncing = Primary(slave0={"ip": "127.0.0.1", "port": 16355, "state": "wait_bgsave", "offset": 0, "lag": 0})
    other_only = Primary(slave0={"ip": "127.0.0.1", "port": 16356, "state": "online", "offset": 5530, "lag": 0})
    assert _online_replica(syncing, CANDIDATE) is None
    assert _online_replica(other_only, CANDIDATE) is None
    assert _online_replica(Primary(), CANDIDATE) is None
