"""Racing for the run lock in etcd from several processes through the store's API, and checking the outcome against
etcd's own revision history. Shared by tests/integration/test_etcd_lock.py (a small sample, in CI) and
benchmarks/etcd_lock_race.py (1,000 attempts)."""

from __future__ import annotations

import base64
import multiprocessing
import os
import time
from typing import Any

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402

RACE_DEADLINE = 600  # seconds the racers get: a hang guard, never a timing assertion


def revision(config: dict[str, Any]) -> int:
    """etcd's current revision."""
    answer = _lock_etcd.EtcdClient(config).call("/kv/range", {"key": base64.b64encode(b"/").decode()})
    return int(answer["header"]["revision"])


def holders_in_history(config: dict[str, Any], full_key: str, first: int, last: int) -> list[int]:
    """Replay the key's history revision by revision (etcd's MVCC keeps every one): the create revisions of its
    successive holders. Raises AssertionError if a holder appears while another still holds the key."""
    client = _lock_etcd.EtcdClient(config)
    key = base64.b64encode(full_key.encode()).decode()
    holders: list[int] = []
    current = None
    for rev in range(first, last + 1):
        kvs = client.call("/kv/range", {"key": key, "revision": str(rev)}).get("kvs") or []
        created = int(kvs[0]["create_revision"]) if kvs else None
        if created is not None and created != current:
            if current is not None:
                raise AssertionError(f"revision {rev}: holder {created} while {current} still held the key")
            holders.append(created)
        current = created
    return holders


def _racer(config: dict[str, Any], key: str, name: str, attempts: int, critical: str, queue: Any) -> None:
    """Take the lock `attempts` times; inside, mark the critical section with mkdir (it fails when another holder is
    inside: a double execution), then release."""
    store = _lock.make_store(config)
    taken, doubles, busy, take_seconds = [], 0, 0, []
    for attempt in range(attempts):
        record = _lock.holder_record(key, f"{name}-{attempt}", os.getpid(), 60, runbook="race")
        started = time.monotonic()
        outcome = store.acquire(record)
        take_seconds.append(time.monotonic() - started)
        if outcome["decision"] != _lock.TAKE:
            busy += 1
            continue
        try:
            os.mkdir(critical)
        except FileExistsError:
            doubles += 1
        else:
            os.rmdir(critical)
        taken.append(outcome["record"]["token"])
        store.release(key, record["run_id"])
    queue.put({"name": name, "taken": taken, "doubles": doubles, "busy": busy, "take_seconds": take_seconds})


def api_race(config: dict[str, Any], key: str, processes: int, attempts: int, critical: str) -> dict[str, Any]:
    """`processes` processes, `attempts` takes each, at once. Returns the tokens taken, double executions, busy
    refusals, every take's duration, and the holders etcd's history shows over the race."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    first = revision(config) + 1
    workers = [context.Process(target=_racer, args=(config, key, f"racer-{i}", attempts, critical, queue))
               for i in range(processes)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=RACE_DEADLINE) for _ in workers]
    for worker in workers:
        worker.join(RACE_DEADLINE)
    return {
        "exit_codes": [worker.exitcode for worker in workers],
        "tokens": sorted(token for result in results for token in result["taken"]),
        "doubles": sum(result["doubles"] for result in results),
        "busy": sum(result["busy"] for result in results),
        "take_seconds": [s for result in results for s in result["take_seconds"]],
        "history": holders_in_history(config, config["prefix"] + key, first, revision(config)),
    }
