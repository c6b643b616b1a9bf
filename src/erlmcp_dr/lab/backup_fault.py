"""The drill's `redis_backup` fault (dr_drill -e kind=redis_backup, docs/drill.md): a corrupt Redis backup.

The newest verified backup of the inventory's directory store (`redis_backup_dir`; on the lab `<root>/redis/backups`)
that still has its sha256 is corrupted in place: FLIP_BYTES bytes in the middle of its RDB are inverted, so its size
and its last bytes (the RDB's EOF and checksum) stay as they were and only a checksum finds it. The original bytes
are planned first (`plan`: nothing changed) so the drill keeps them in its pending record (0600) before `corrupt`
flips them; `put_back` writes them back and checks the file's sha256 against the backup's metadata again, also at the
next drill after a kill -9 (a fault planned but never flipped leaves nothing to do).

Also the evidence the drill shows: readiness's own Redis backup check on the store (`readiness_check`: it must fail,
naming the damaged backup) and the verification redis_restore runs before it touches a server (`restore_refusal`:
its sha256 check must refuse the backup), both called in this process, never a restore onto a server.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional

from erlmcp_dr.compose import inventory as inventory_module

FLIP_BYTES = 16  # inverted in the middle of the RDB: far from its header and from its EOF opcode and CRC64


def store_dir(view: Any) -> Optional[str]:
    """The directory store readiness reads (the first Redis host's redis_backup_dir), else None."""
    redis_hosts = list(view.hosts.get("redis", {}).values())
    folder = redis_hosts[0].get("redis_backup_dir") if redis_hosts else None
    return str(folder) if folder else None


def _store(folder: str) -> Any:
    return inventory_module._module("_redis.store").DirectoryStore(folder)


def plan(folder: Optional[str]) -> Dict[str, Any]:
    """What `corrupt` will change, changing nothing: the newest verified backup whose file still has its sha256,
    where its bytes are flipped and what they are now. Raises RuntimeError when there is no such backup."""
    if not folder:
        raise RuntimeError("redis_backup: the inventory has no redis_backup_dir (the Redis backup store)")
    store = _store(folder)
    readiness = inventory_module._module("_region.readiness")
    intact, damaged = readiness.verify_newest(store.list(), store.stored_sha256, readiness.REDIS_BACKUP_HASHED_MAX)
    if intact is None:
        raise RuntimeError(f"redis_backup: no verified backup whose file still has its sha256 in {folder} "
                           f"(run redis_backup first){'; damaged already: ' if damaged else ''}"
                           + ", ".join(d["id"] for d in damaged))
    path = store.rdb_path(intact["id"])
    size = os.path.getsize(path)
    if size < 4 * FLIP_BYTES:
        raise RuntimeError(f"redis_backup: backup {intact['id']} is {size} bytes, too small to corrupt inside")
    offset = size // 2 - FLIP_BYTES // 2
    with open(path, "rb") as handle:
        handle.seek(offset)
        original = handle.read(FLIP_BYTES)
    return {"target": intact["id"], "store": folder, "path": path, "size": size, "offset": offset,
            "length": FLIP_BYTES, "original": original.hex(), "sha256": intact.get("sha256"),
            "lastsave": intact.get("lastsave")}


def _write_at(path: str, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def corrupt(planned: Dict[str, Any]) -> Dict[str, Any]:
    """Invert the planned bytes (kept in the drill's pending record before this runs); returns the fault:
    {target (the backup id), region None, pid None, signal None, backup (the plan), sent_at}."""
    flipped = bytes(b ^ 0xFF for b in bytes.fromhex(planned["original"]))
    sent_at = time.monotonic()
    _write_at(planned["path"], int(planned["offset"]), flipped)
    store = _store(planned["store"])
    if store.stored_sha256(planned["target"]) == planned["sha256"]:  # cannot be, unless the write went nowhere
        raise RuntimeError(f"redis_backup: backup {planned['target']} still has its sha256 after the flip")
    return {"target": planned["target"], "region": None, "pid": None, "signal": None, "backup": dict(planned),
            "sent_at": sent_at}


def put_back(fault: Dict[str, Any]) -> Dict[str, Any]:
    """Write the backup's original bytes back (when they differ) and check its sha256 against its metadata.
    Raises RuntimeError when the backup still does not verify (or its file is gone)."""
    planned = fault.get("backup") or {}
    path, offset = planned["path"], int(planned["offset"])
    original = bytes.fromhex(planned["original"])
    if not os.path.isfile(path):
        raise RuntimeError(f"backup {planned['target']}: its file {path} is gone; its original bytes cannot be put "
                           "back")
    with open(path, "rb") as handle:
        handle.seek(offset)
        now = handle.read(len(original))
    rewritten = now != original
    if rewritten:
        _write_at(path, offset, original)
    digest = _store(planned["store"]).stored_sha256(planned["target"])
    if digest != planned["sha256"]:
        raise RuntimeError(f"backup {planned['target']}: the sha256 of {path} is {digest} after putting its bytes "
                           f"back, its metadata says {planned['sha256']}")
    return {"backup": planned["target"], "rewritten": rewritten, "sha256": digest}


def readiness_check(view: Any, folder: Optional[str]) -> Dict[str, Any]:
    """readiness's `redis_backup_age` check on the store, as `runbook readiness` judges it (the inventory's
    dr_readiness thresholds and dr_tier_objectives)."""
    readiness = inventory_module._module("_region.readiness")
    judge = inventory_module._module("_region.readiness_judge")
    limits = judge.thresholds(view.all_vars.get("dr_readiness"), view.all_vars.get("dr_tier_objectives"))
    checks = readiness._redis_backup({"redis_backup_dir": folder}, limits, time.time())
    return next(c for c in checks if c["name"] == "redis_backup_age")


def restore_refusal(folder: str, backup_id: str, hmac_key: Any = None) -> Optional[str]:
    """What redis_restore says when asked for this backup: the verification it runs before it touches a server
    (the metadata, then the stored file's sha256). None: it would accept the backup."""
    restore = inventory_module._module("_redis.restore")
    errors = inventory_module._module("_redis.client")
    store = _store(folder)
    metadata = store.read(backup_id)
    if metadata is None:
        return f"no backup {backup_id!r} in the store {folder}"
    try:
        restore.verify_sha256(store, metadata, hmac_key)
    except errors.RedisError as exc:
        return str(exc)
    return None
