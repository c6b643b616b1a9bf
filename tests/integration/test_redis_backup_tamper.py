"""A Redis backup rewritten in its store is never restored silently (issue 16 row 11), on the lab's real
redis-server and redis-check-rdb.

The attack: a value changed inside the stored RDB, the metadata's sha256 recomputed to match. The RDB's own CRC64
would catch the change, so the attacker either zeroes it (Redis then skips the check: "saved with checksum
disabled") or recomputes it (CRC64 is no secret). A zeroed CRC is refused with or without a key; a recomputed one
only the metadata's HMAC under a key the store does not hold can catch (hmac_key). Both refusals happen before the
server is touched. redis-check-rdb's failures are reported by their reason, not by its closing counters.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from runbook_helpers import redis_client, redis_login_args, run_module
from test_redis_restore import DATA, _fill, _holds_the_data, _restore, _run_id

from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

KEY = "backup-signing-key-" + "k" * 16
CHANGED_FROM, CHANGED_TO = b"value-123", b"value-999"  # same length: the RDB stays well-formed


def crc64(data: bytes) -> int:
    """Redis's CRC-64 (Jones polynomial, reflected), as its RDB trailer holds it (little-endian)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x95AC9329AC4BC9B5 if crc & 1 else 0)
    return crc


@pytest.fixture(scope="module")
def signed_store(shared_lab: lab.LabConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one verified backup ("signed") of the shared lab's primary, its metadata under KEY."""
    store = tmp_path_factory.mktemp("redis-tamper") / "store"
    _fill(shared_lab)
    result = run_module("erlmcp.dr.redis_backup", dict(redis_login_args(shared_lab, "redis-a"), store_dir=str(store),
                                                       backup_id="signed", poll_interval=0.05, hmac_key=KEY))
    assert result["verified"] and not result.get("failed"), result
    assert json.loads((store / "signed.json").read_text())["hmac"]
    assert KEY not in json.dumps(result)
    return store


def _tampered(store: Path, to: Path, crc: str) -> None:
    """`signed` copied, one value changed in its RDB, the CRC64 zeroed or recomputed, the sha256 recomputed."""
    shutil.copytree(store, to)
    data = bytearray((to / "signed.rdb").read_bytes())
    at = data.find(CHANGED_FROM)
    assert at > 0 and DATA["key:123"] == CHANGED_FROM.decode()
    data[at:at + len(CHANGED_FROM)] = CHANGED_TO
    data[-8:] = bytes(8) if crc == "zeroed" else crc64(bytes(data[:-8])).to_bytes(8, "little")
    (to / "signed.rdb").write_bytes(bytes(data))
    metadata = json.loads((to / "signed.json").read_text())
    metadata["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (to / "signed.json").write_text(json.dumps(metadata))


@pytest.mark.parametrize("crc, key, needle", [
    ("zeroed", None, "the RDB was saved with its checksum disabled (CRC64 0)"),
    ("zeroed", KEY, "backup signed's metadata does not match its HMAC"),
    ("recomputed", KEY, "backup signed's metadata does not match its HMAC"),
])
def test_a_backup_rewritten_in_its_store_is_refused_before_the_server_is_touched(untouched, signed_store, tmp_path,
                                                                                 crc, key, needle):
    _tampered(signed_store, tmp_path / "store", crc)
    run_id = _run_id(untouched)
    extra = {"hmac_key": key} if key else {}
    result = _restore(untouched, tmp_path / "store", backup="signed", **extra)
    assert result["failed"] and needle in result["msg"], result["msg"]
    assert "nothing was touched" in result["msg"] and KEY not in json.dumps(result)
    assert _run_id(untouched) == run_id and _holds_the_data(untouched, "redis-a")


def test_without_the_hmac_a_recomputed_crc_is_what_cannot_be_detected(signed_store, tmp_path):
    """What the docs say cannot be detected without a key: the rewritten RDB passes redis-check-rdb and the sha256."""
    from erlmcp_dr.paths import ensure_collection_importable

    ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._redis import store

    _tampered(signed_store, tmp_path / "store", "recomputed")
    check = store.check_rdb("redis-check-rdb", str(tmp_path / "store" / "signed.rdb"), 60)
    assert check["ok"] and check["checksum"], check


def test_an_unsigned_backup_is_refused_when_a_key_is_set_and_a_signed_one_restores_in_check_mode(
        untouched, signed_store, tmp_path):
    shutil.copytree(signed_store, tmp_path / "store")
    metadata = json.loads((tmp_path / "store" / "signed.json").read_text())
    del metadata["hmac"]
    (tmp_path / "store" / "signed.json").write_text(json.dumps(metadata))
    unsigned = _restore(untouched, tmp_path / "store", backup="signed", hmac_key=KEY)
    assert unsigned["failed"] and "backup signed carries no HMAC" in unsigned["msg"], unsigned["msg"]
    planned = _restore(untouched, signed_store, check=True, backup="signed", hmac_key=KEY)
    assert not planned.get("failed") and planned["backup_id"] == "signed", planned


def test_a_corrupt_rdb_is_reported_by_redis_check_rdbs_reason(untouched, signed_store, tmp_path):
    shutil.copytree(signed_store, tmp_path / "store")
    data = bytearray((tmp_path / "store" / "signed.rdb").read_bytes())
    data[data.find(CHANGED_FROM) + 7] ^= 0x01  # one value's byte: the CRC64 no longer matches
    (tmp_path / "store" / "signed.rdb").write_bytes(bytes(data))
    metadata = json.loads((tmp_path / "store" / "signed.json").read_text())
    metadata["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (tmp_path / "store" / "signed.json").write_text(json.dumps(metadata))
    result = _restore(untouched, tmp_path / "store", backup="signed")
    assert result["failed"] and "fails redis-check-rdb (exit 1): RDB CRC error; While doing: check-sum" in result[
        "msg"], result["msg"]
    assert "keys read" not in result["msg"]
    with redis_client(untouched, "redis-a") as client:
        assert client.get("key:123") == CHANGED_FROM.decode()
