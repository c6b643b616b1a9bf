"""dr_drill -e kind=redis_backup on the real lab (PostgreSQL, redis-server, Knot DNS, the lab's app): the newest
verified Redis backup is corrupted inside its RDB (a drill killed with kill -9 right after leaves it so, and the next
drill puts its bytes back first); readiness's own Redis backup check finds it and redis_restore's
verification refuses it; the recovery (redis_backup) makes a fresh verified backup, after which the check passes;
the client, writing and reading through the public name, sees no outage; the restore puts the original bytes back.

Judged from the outside: the backup files' sha256 against their metadata (read here, not through the drill), the
store's listing, the drill history and the verdict table.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from runbook_helpers import (
    inventory_path,
    kill_drill_once,
    new_lab,
    redis_login_args,
    run_json,
    run_module,
    runbook_cli,
)

from erlmcp_dr.drill import run as drill

pytestmark = pytest.mark.integration


def _catalog(store: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in store.glob("*.json")}


def _intact(store: Path, backup_id: str, metadata: dict) -> bool:
    return hashlib.sha256((store / f"{backup_id}.rdb").read_bytes()).hexdigest() == metadata["sha256"]


def test_a_corrupt_redis_backup_is_found_refused_replaced_and_put_back_with_no_outage(home) -> None:
    """One lab: a drill killed with kill -9 right after its fault leaves the backup corrupt, and `runbook readiness`
    finds it; the next drill puts the original bytes back first, then runs the whole drill to a pass."""
    with new_lab(app=True, dns=True) as cfg:
        store = cfg.root / "redis" / "backups"  # the lab inventory's redis_backup_dir
        made = run_module("erlmcp.dr.redis_backup", dict(redis_login_args(cfg, "redis-a"), store_dir=str(store),
                                                         backup_id="nightly", node_name="redis-a", poll_interval=0.05))
        assert not made["failed"] and made["verified"], made
        original = (store / "nightly.rdb").read_bytes()
        metadata = _catalog(store)["nightly"]
        inventory = inventory_path(cfg)
        argv = ("run", "dr_drill", "-i", str(inventory), "-e", "kind=redis_backup", "--yes")
        pending = drill.pending_path(inventory)
        # killed once the fault is recorded as done (not only planned): the bytes are flipped
        left = kill_drill_once(inventory, ["kind=redis_backup"],
                               lambda fault: bool(fault.get("backup")) and not fault.get("planned_only"))
        kept = left["fault"]["backup"]
        assert kept["target"] == "nightly" and kept["sha256"] == metadata["sha256"]
        assert oct(pending.stat().st_mode & 0o777) == "0o600"
        damaged = (store / "nightly.rdb").read_bytes()
        assert len(damaged) == len(original) and damaged != original and damaged[-32:] == original[-32:]
        assert bytes.fromhex(kept["original"]) == original[kept["offset"]:kept["offset"] + kept["length"]]

        # Readiness, the runbook an operator runs, finds it: the newest verified backup no longer has its sha256.
        cli = runbook_cli("readiness", "-i", str(inventory), "--json")
        check = next(c for c in cli.json["checks"] if c["name"] == "redis_backup_age")
        assert check["verdict"] == "fail" and "backup nightly is damaged" in check["detail"], check

        _, result = run_json(*argv, expect_rc=0)
        details = result["facts"]["summary"]["details"]
        first = result["steps"][0]
        assert first["task"] == "restore what an earlier drill left" and not first["failed"], first
        assert first["data"]["result"]["backup put back"]["rewritten"] is True, first
        assert details["restored_first"]["fault"]["target"] == "nightly"
        assert details["verdict"] == "passed", (details["verdict_reason"], details["criteria"])
        assert details["fault"]["target"] == "nightly" and details["recovery_runbook"] == "redis_backup"

        # Readiness's check found the corrupt backup (its sha256 against the metadata) and named the damage.
        found = details["backup_fault"]["detected"]
        assert found["verdict"] == "fail" and "backup nightly is damaged: the sha256 of its file is" in found["detail"]
        refused = details["backup_fault"]["restore"]
        assert refused["refused"] is True and "backup nightly is damaged" in refused["message"], refused
        assert details["backup_fault"]["after"]["verdict"] == "pass", details["backup_fault"]["after"]
        rows = {c["name"]: c["verdict"] for c in details["criteria"]}
        assert rows == {"rto_seconds": "pass", "rpo_seconds": "pass", "sessions_lost": "pass", "error_rate": "pass",
                        "recovery_seconds": "pass", "detected_by_readiness": "pass", "refused_by_restore": "pass",
                        "readiness_after_recovery": "pass"}
        measured = details["measured"]
        assert measured["failed_attempts"] == 0 and measured["rto_seconds"] == 0.0  # the client saw nothing
        assert measured["acknowledged_writes"] > 0 and measured["lost_writes_count"] == 0

        # The lab as it was, plus the recovery's backup: the original bytes back, and a new verified backup.
        catalog = _catalog(store)
        assert (store / "nightly.rdb").read_bytes() == original and _intact(store, "nightly", catalog["nightly"])
        new = [b for backup_id, b in catalog.items() if backup_id != "nightly" and b.get("verified")]
        assert new and all(_intact(store, b["id"], b) for b in new), catalog  # the killed drill's may be there too
        assert max(b["lastsave"] for b in new) >= catalog["nightly"]["lastsave"]
        restore = next(s for s in result["steps"] if s["task"] == "restore the steady state")
        assert restore["data"]["result"]["backup put back"]["rewritten"] is True, restore
        assert details["restored"] is True and details["steady_state_after"]["holds"]
        assert not pending.exists()
        history = [json.loads(line) for line in (home / "drills" / "history.jsonl").read_text().splitlines()]
        assert [(r["kind"], r["verdict"]) for r in history] == [("redis_backup", "passed")]  # kill -9: no line
