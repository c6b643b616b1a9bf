"""The observers' board in etcd: verdicts under each observer's lease, and one trigger record per region.

Keys (under the inventory's dr_watch.prefix, default /erlmcp-dr/watch/):
- `verdicts/<region>/<observer>`: the observer's last verdict about the region (failed or not, for how many
  consecutive checks, its interval, when, why), attached to the observer's lease. The lease lives
  WatchSettings.lease_seconds (three checks) unless renewed, so a dead or cut-off observer's verdicts vanish by
  etcd's own clock: every verdict read is a live observer's.
- `failovers/<region>`: the trigger. Claimed with ONE transaction (create it only if it does not exist, as the run
  lock's take), attached to a lease of the claim's own (CLAIM_SECONDS) that a keeper thread renews while the
  regional_failover runs (an observer killed mid-run loses the claim when that lease expires; the next trigger's run
  resumes the move from its journal); when
  the run ends, the record is rewritten without a lease (persistent) with the outcome, so no observer starts
  another failover of that region until an operator clears it (`runbook watch --clear-failover REGION`, after the
  failback).

Through the run lock's etcd client (_lock/etcd.py EtcdClient: every member in turn, a member without quorum counts
as not answering); when no member answers, EtcdUnavailable: the observer says "automation unavailable".
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any, Dict, List, Optional, Tuple

from erlmcp_dr import paths
from erlmcp_dr.watch_quorum import Verdict

VERDICTS = "verdicts/"
CLAIM_SECONDS = 30  # a claim outlives a dead observer this long; then another trigger resumes the move
FAILOVERS = "failovers/"


def _lock_etcd() -> Any:
    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd

    return etcd


def store_error() -> type:
    """What the etcd client raises when etcd cannot serve the request (EtcdUnavailable) or refuses it."""
    return _lock_etcd().LockStoreError


class ClaimKeeper:
    """Renews a claim's lease every third of its TTL until stopped (a thread of the observer, beside the run)."""

    def __init__(self, board: Board, lease_id: int) -> None:
        self.board, self.lease_id = board, lease_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._keep, name=f"watch-claim-{lease_id:x}", daemon=True)
        self.thread.start()

    def _keep(self) -> None:
        while not self.stop.wait(CLAIM_SECONDS / 3.0):
            try:
                self.board.client.refresh(self.lease_id)
            except self.board.etcd.LockStoreError:  # etcd away: the next round tries again, until the TTL ends
                continue

    def end(self) -> None:
        self.stop.set()
        self.thread.join()


class Board:
    def __init__(self, etcd_settings: Dict[str, Any], prefix: str, observer: str, lease_seconds: int,
                 client: Any = None) -> None:
        self.etcd = _lock_etcd()
        self.client = client or self.etcd.EtcdClient(etcd_settings)
        self.prefix = prefix
        self.observer = observer
        self.lease_seconds = lease_seconds
        self.lease_id: Optional[int] = None

    # ------------------------------------------------------------ the observer's lease

    def lease(self) -> int:
        """This observer's live lease: renewed, or a new one when it expired (etcd was away longer than its TTL)."""
        if self.lease_id is not None:
            try:
                if self.client.refresh(self.lease_id) > 0:
                    return self.lease_id
            except self.etcd.EtcdUnavailable:
                raise
            except self.etcd.LockStoreError:  # "lease not found": it expired; a new one below
                pass
        self.lease_id = self.client.grant(self.lease_seconds)[0]
        return self.lease_id

    # ------------------------------------------------------------ verdicts

    def publish(self, verdicts: List[Verdict], details: Dict[str, Dict[str, Any]]) -> None:
        """Every verdict of this check in one transaction, under the observer's lease."""
        lease = self.lease()
        puts = []
        for verdict in verdicts:
            record = {"observer": verdict.observer, "region": verdict.region, "failed": verdict.failed,
                      "consecutive": verdict.consecutive, "interval_seconds": verdict.interval_seconds,
                      **details.get(verdict.region, {})}
            puts.append({"request_put": {"key": self.etcd.b64(self._verdict_key(verdict.region)),
                                         "value": self.etcd.b64(json.dumps(record, sort_keys=True)),
                                         "lease": str(lease)}})
        self.client.txn({"compare": [], "success": puts, "failure": []})

    def read(self) -> Tuple[List[Verdict], Dict[str, Dict[str, Any]]]:
        """(every live verdict, {region: its trigger record}) in one linearizable read of the whole prefix."""
        answer = self.client.call("/kv/range", self.etcd.prefix_range(self.prefix))
        verdicts: List[Verdict] = []
        failovers: Dict[str, Dict[str, Any]] = {}
        for kv in answer.get("kvs") or []:
            key = self.etcd.unb64(kv.get("key"))[len(self.prefix):]
            try:
                record = json.loads(self.etcd.unb64(kv.get("value")))
            except ValueError:
                continue  # not ours: only well-formed records count
            if key.startswith(VERDICTS) and isinstance(record, dict):
                verdict = _verdict(record)
                if verdict is not None:
                    verdicts.append(verdict)
            elif key.startswith(FAILOVERS) and isinstance(record, dict):
                failovers[key[len(FAILOVERS):]] = dict(record, revision=int(kv.get("mod_revision") or 0))
        return verdicts, failovers

    # ------------------------------------------------------------ the trigger

    def claim(self, region: str, record: Dict[str, Any]) -> Tuple[Optional[int], Optional[Dict[str, Any]]]:
        """(the claim's lease, None) when this observer now holds the region's trigger, else (None, the record that
        holds it). The claim has a lease of its own (CLAIM_SECONDS), renewed by ClaimKeeper while the run lives:
        not the verdicts' short lease, which a check slowed down by the run on a busy controller can miss."""
        key = self._failover_key(region)
        claimed = dict(record, observer=self.observer, host=socket.gethostname(), state="running")
        lease_id = self.client.grant(CLAIM_SECONDS)[0]
        outcome = self.etcd.txn_outcome(self.client.txn(
            self.etcd.take_txn(key, json.dumps(claimed, sort_keys=True), lease_id)))
        if outcome[0]:
            return lease_id, None
        self.client.revoke(lease_id)
        kv = outcome[2]
        return None, json.loads(self.etcd.unb64(kv.get("value"))) if kv else {"state": "gone meanwhile"}

    def settle(self, region: str, record: Dict[str, Any]) -> None:
        """The claim's outcome, kept without a lease: no observer triggers this region again until it is cleared."""
        key = self._failover_key(region)
        value = json.dumps(dict(record, observer=self.observer, host=socket.gethostname()), sort_keys=True)
        self.client.call("/kv/put", {"key": self.etcd.b64(key), "value": self.etcd.b64(value)})

    def clear(self, region: str) -> bool:
        """Remove the region's trigger record (after the failback); whether there was one."""
        answer = self.client.call("/kv/deleterange", {"key": self.etcd.b64(self._failover_key(region))})
        return int(answer.get("deleted") or 0) > 0

    def give_back(self, region: str) -> bool:
        """Delete the region's trigger record if it is still this observer's running claim (a run the run lock
        turned away); whether it did."""
        key = self._failover_key(region)
        kv = self.client.read(key)
        if kv is None:
            return False
        record = json.loads(self.etcd.unb64(kv.get("value")))
        if record.get("observer") != self.observer or record.get("state") != "running":
            return False
        delete = {"request_delete_range": {"key": self.etcd.b64(key)}}
        return self.etcd.txn_outcome(self.client.txn(
            self.etcd.guarded_txn(key, int(kv.get("create_revision") or 0), delete)))[0]

    def revoke(self, lease_id: int) -> None:
        self.client.revoke(lease_id)

    def release(self) -> None:
        """Revoke this observer's lease (a clean stop): its verdicts and a running claim go at once."""
        if self.lease_id is not None:
            self.client.revoke(self.lease_id)
            self.lease_id = None

    def _verdict_key(self, region: str) -> str:
        return f"{self.prefix}{VERDICTS}{region}/{self.observer}"

    def _failover_key(self, region: str) -> str:
        return f"{self.prefix}{FAILOVERS}{region}"


def _verdict(record: Dict[str, Any]) -> Optional[Verdict]:
    try:
        return Verdict(str(record["observer"]), str(record["region"]), bool(record["failed"]),
                       int(record["consecutive"]), float(record["interval_seconds"]))
    except (KeyError, TypeError, ValueError):
        return None
