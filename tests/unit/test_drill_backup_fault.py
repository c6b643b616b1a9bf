"""The redis_backup drill's pure and file-only parts, no server: readiness's Redis backup check on a directory store
whose newest backup was corrupted inside its RDB (sha256 against the metadata, the newest backup that still
verifies reported), the fault's flip and put-back of the original bytes, redis_restore's own verification refusing
the corrupt file, the drill's targets and verdict rows for the kind, and its Chaos Toolkit export."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import jsonschema
import pytest

from erlmcp_dr import catalog, params
from erlmcp_dr.drill import chaos as drill_chaos
from erlmcp_dr.drill import judge as drill_judge
from erlmcp_dr.drill import run as drill
from erlmcp_dr.lab import backup_fault
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import store as redis_store  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness as engine  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness_judge as judge  # noqa: E402

LIMITS = judge.thresholds({})


def backup(store: Path, backup_id: str, age: float, size: int = 4096) -> dict:
    """A backup as redis_backup leaves it: <id>.rdb and its metadata (verified, sha256 of the stored copy)."""
    body = b"REDIS0011" + bytes((i * 7 + len(backup_id)) % 251 for i in range(size - 9 - 9)) + b"\xff" + bytes(8)
    (store / f"{backup_id}.rdb").write_bytes(body)
    metadata = {"format": redis_store.METADATA_FORMAT, "id": backup_id, "verified": True,
                "sha256": hashlib.sha256(body).hexdigest(), "lastsave": int(time.time() - age), "size": len(body)}
    (store / f"{backup_id}.json").write_text(json.dumps(metadata))
    return metadata


def check_of(store: Path) -> dict:
    return engine._redis_backup({"redis_backup_dir": str(store)}, LIMITS, time.time())[0]


def test_readiness_verifies_the_newest_backups_sha256_and_reports_the_newest_that_still_verifies(tmp_path) -> None:
    store = tmp_path / "backups"
    store.mkdir()
    backup(store, "older", age=100)
    newest = backup(store, "newest", age=10)
    healthy = check_of(store)
    assert healthy["verdict"] == "pass" and healthy["detail"] == "recent enough; backup newest, its sha256 checked"

    planned = backup_fault.plan(str(store))
    assert planned["target"] == "newest" and planned["sha256"] == newest["sha256"]
    rdb = store / "newest.rdb"
    before = rdb.read_bytes()
    fault = backup_fault.corrupt(planned)
    after = rdb.read_bytes()
    # Inside the RDB: same size, header and last bytes (EOF, CRC64) untouched, so only a checksum finds it.
    assert len(after) == len(before) and after[:9] == before[:9] and after[-64:] == before[-64:]
    assert sum(a != b for a, b in zip(before, after, strict=True)) == backup_fault.FLIP_BYTES

    found = check_of(store)
    assert found["verdict"] == "fail", found
    assert "backup newest is damaged: the sha256 of its file is" in found["detail"]
    assert f"its metadata says {newest['sha256']}" in found["detail"]
    assert "the newest backup that verifies: older" in found["detail"]
    assert 95 <= found["measured"] <= 120  # the age of `older`, the backup a restore could still use

    refused = backup_fault.restore_refusal(str(store), "newest")
    assert refused is not None and "backup newest is damaged" in refused and "nothing was touched" in refused
    assert backup_fault.restore_refusal(str(store), "older") is None

    # The original bytes back, twice (the second finds nothing to do): the backup verifies again.
    record = json.loads(json.dumps(fault))  # as the pending record keeps it
    assert backup_fault.put_back(record) == {"backup": "newest", "rewritten": True, "sha256": newest["sha256"]}
    assert backup_fault.put_back(record)["rewritten"] is False
    assert rdb.read_bytes() == before and check_of(store)["verdict"] == "pass"
    assert backup_fault.restore_refusal(str(store), "newest") is None


def test_readiness_on_a_missing_file_and_on_every_hashed_backup_damaged(tmp_path) -> None:
    store = tmp_path / "backups"
    store.mkdir()
    for index in range(engine.REDIS_BACKUP_HASHED_MAX + 1):
        backup(store, f"b{index}", age=10 * (10 - index))
    (store / "b3.rdb").unlink()
    missing = check_of(store)
    assert missing["verdict"] == "fail" and "backup b3 is damaged: its file is missing" in missing["detail"]
    assert "the newest backup that verifies: b2" in missing["detail"]

    hashed = []
    intact, damaged = engine.verify_newest(redis_store.DirectoryStore(str(store)).list(),
                                           lambda backup_id: hashed.append(backup_id) or "0" * 64,
                                           engine.REDIS_BACKUP_HASHED_MAX)
    assert intact is None and [d["id"] for d in damaged] == ["b3", "b2", "b1"] and hashed == ["b3", "b2", "b1"]
    judged = judge.redis_backup(intact, damaged, None, LIMITS, str(store), engine.REDIS_BACKUP_HASHED_MAX)
    assert judged["verdict"] == "fail" and judged["measured"] is None
    assert "none of the newest 3 verified backups verifies (older ones are not hashed)" in judged["detail"]
    assert "no verified backup verifies" in judge.redis_backup(None, damaged[:1], None, LIMITS, "s", 3)["detail"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_of(empty)["verdict"] == "fail" and "no verified backup" in check_of(empty)["detail"]
    with pytest.raises(RuntimeError, match="no verified backup whose file still has its sha256"):
        backup_fault.plan(str(empty))


def test_the_kind_has_its_target_recovery_and_verdict_rows() -> None:
    targets = drill_judge.targets_for("redis_backup", None)
    assert targets["rto_seconds"]["target"] == 1.0 and "corrupt Redis backup" in targets["rto_seconds"]["source"]
    assert drill_judge.targets_for("redis_backup", {"rto_seconds": {"region": 60}})["rto_seconds"]["target"] == 1.0
    assert drill.RECOVERY["redis_backup"] == "redis_backup"
    assert params.validate(catalog.load("dr_drill"), {"kind": "redis_backup"})["kind"] == "redis_backup"

    found = {"verdict": "fail", "detail": "backup nightly is damaged: ..."}
    evidence = {"detected": found, "restore": {"refused": True, "message": "backup nightly is damaged"},
                "after": {"verdict": "pass", "detail": "recent enough; backup new, its sha256 checked"}}
    rows = drill_judge.backup_fault_criteria(evidence, "nightly")
    assert [(r.name, r.verdict) for r in rows] == [("detected_by_readiness", "pass"), ("refused_by_restore", "pass"),
                                                   ("readiness_after_recovery", "pass")]
    missed = drill_judge.backup_fault_criteria(dict(evidence, detected={"verdict": "pass", "detail": "ok"},
                                                    restore={"refused": False}), "nightly")
    assert [r.verdict for r in missed] == ["fail", "fail", "pass"]
    assert {r.verdict for r in drill_judge.backup_fault_criteria(None, None)} == {"fail"}  # never reached
    # The client saw nothing: RTO 0 passes the 1 s target, and one failed request a second later fails it.
    seen = drill_judge.outage([drill_judge.Attempt("write", 0.0, 0.1, True, 1)], 0.05, 0.02)
    loss, errors = drill_judge.DataLoss(1, [], 0, 0.0, 0.0), {"rate": 0.0}
    table = drill_judge.criteria("redis_backup", targets, seen, loss, errors, 5.0) + rows
    assert drill_judge.verdict(drill_judge.Hypothesis(True), True, True, table, True)["verdict"] == "passed"
    late = drill_judge.outage([drill_judge.Attempt("write", 1.0, 1.1, False), drill_judge.Attempt("write", 1.2, 1.3,
                                                                                                  True, 2)], 0.05, 0.02)
    assert drill_judge.criteria("redis_backup", targets, late, loss, errors, 5.0)[0].verdict == "fail"


def test_the_chaos_toolkit_export_names_the_corrupt_backup() -> None:
    criteria = [{"name": n, "target": "t", "measured": 0, "verdict": "pass", "source": "s", "detail": ""}
                for n in ("rto_seconds", "detected_by_readiness", "refused_by_restore", "readiness_after_recovery")]
    details = {"kind": "redis_backup", "verdict": "passed", "verdict_reason": "r", "restored": True,
               "recovery_runbook": "redis_backup", "fault": {"target": "nightly", "signal": None},
               "criteria": criteria, "targets": {"rto_seconds": {"target": 1.0, "source": "s"}},
               "measured": {"rto_seconds": 0.0, "timeline": []},
               "steady_state_before": {"holds": True}, "steady_state_after": {"holds": True}}
    steps = [{"task": "inject the fault", "action": "dr_drill", "start": "a", "end": "b", "duration": 0.1,
              "failed": False, "data": {"result": {"target": "nightly"}}},
             {"task": "restore the steady state", "action": "dr_drill", "start": "c", "end": "d", "duration": 1.0,
              "failed": False, "data": {}}]
    result = {"run_id": "x", "inventory": "/inv", "started_at": "a", "ended_at": "d", "duration_seconds": 9.0,
              "steps": steps, "facts": {"summary": {"details": details}}}
    experiment, journal = drill_chaos.experiment(result), drill_chaos.journal(result)
    schema = drill_chaos.schema()
    jsonschema.validate(experiment, {**schema, "$ref": "#/$defs/experiment"})
    jsonschema.validate(journal, {**schema, "$ref": "#/$defs/journal"})
    assert experiment["method"][0]["name"] == "inject: corrupt the newest verified Redis backup (nightly)"
    assert experiment["method"][1]["name"] == "recover: redis_backup"
    assert "original bytes put back" in experiment["rollbacks"][0]["name"]
    assert len(experiment["steady-state-hypothesis"]["probes"]) == 1 + len(criteria)


def test_the_drill_schedule_leaves_redis_backup_out_unless_the_inventory_adds_it() -> None:
    now = time.time()
    record = {"kind": "redis_backup", "verdict": "passed", "finished_at": now - 86400.0, "run_id": "d"}
    default = {c["name"] for c in judge.drills([record], now, LIMITS)}
    assert "drill redis_backup" not in default and "drill region" in default
    limits = judge.thresholds({"drill_age_days": {"redis_backup": 92}})
    checks = {c["name"]: c for c in judge.drills([record], now, limits)}
    assert checks["drill redis_backup"]["verdict"] == "pass" and checks["drill region"]["threshold"] == "<= 183.0"
