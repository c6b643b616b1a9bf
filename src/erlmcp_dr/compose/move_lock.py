"""The lock over a whole move: every target's run lock, taken under the move's run id before its first step and held
to its end, in the store the inventory chose (plugins/module_utils/_lock/store.store_settings).

- Directory store (one controller): a record per key in the controller's lock folder, naming this process; a
  record whose process is gone is taken over, as the single runs do.
- etcd store (controllers that share nothing but etcd): a key per target under a lease of its own, kept alive by the
  lease keeper single runs use (_lock/etcd.start_keeper), here watching this process: it renews every TTL/3 while
  the move's process runs and is not stopped, and stops when it ends. A move killed with -9 loses its keys when
  their leases expire; a move paused past its TTL loses them too. The key's create revision is the move's fencing
  token.

The children run with `erlmcp_dr_lock_owner=<the move's run id>`: their erlmcp.dr.run_lock finds each key held by
that run id and neither rewrites nor releases it; with etcd it notes the move's token and lease for the child's own
fencing checks, so every changing step of every child checks, right before it acts, that the move still holds it.

Before every step the move itself checks that it still holds every key with the token and lease it took
(`before_step`). A forward step after a loss is not run: the move stops with the reason (before the point of no
return the engine then undoes the completed steps; after it, the run rolls forward by a re-run). An undo step takes
the lost keys back first, under a new lease and token, when nobody else took them: the undo must run under a live
lock too, and it reads the systems again, so a gap in between changes what it does, never whether it is safe; when
another run holds a key, the undo is refused naming that run.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from erlmcp_dr.compose import journal as journal_module
from erlmcp_dr.compose.engine import StepOutcome, StepRunner
from erlmcp_dr.compose.inventory import _lock_module, _module
from erlmcp_dr.compose.spec import Call, WorkflowStep
from erlmcp_dr.errors import RunbookError, RunBusy

log = logging.getLogger(__name__)

FORWARD = "forward"
KEEPER_EXIT_SECONDS = 5.0  # a keeper told to stop ends within its poll (1 s) or one renewal round


class MoveLockUnavailable(RunbookError):
    """The lock store cannot be used (etcd without a quorum, an unwritable folder): the move does not start."""


@dataclass
class HeldKey:
    key: str
    token: Optional[int] = None  # etcd: the key's create revision (the fencing token); directory: none
    lease_id: Optional[int] = None
    keeper: Tuple[Optional[int], Optional[int]] = (None, None)  # the lease keeper's (pid, start ticks)


class MoveLock:
    """The keys of one move and how they are held; `take` them all or none, `before_step`, `release`."""

    def __init__(self, settings: Mapping[str, Any], keys: List[str], run_id: str, runbook: str,
                 operator: Optional[str], inventory: str) -> None:
        self.lock = _lock_module()
        self.settings = dict(settings)
        self.store = self.lock.make_store(self.settings)
        self.keys = sorted(keys)  # one order for every move: two of them never hold one key each
        self.run_id, self.runbook, self.operator, self.inventory = run_id, runbook, operator or "", inventory
        self.held: Dict[str, HeldKey] = {}
        self.stopped_keepers: List[int] = []  # keepers of lost leases, reaped at the release
        # A background step (declare) runs its check in its own thread, beside the recovery's: one check at a time,
        # so a take_back never races another step's read of `held`.
        self._checking = threading.Lock()

    @property
    def shared(self) -> bool:
        """Whether the store is etcd's: shared by controllers, so a lease can be lost and the token fences."""
        return self.store.kind == self.lock.STORE_ETCD

    def tokens(self) -> Dict[str, int]:
        return {key: held.token for key, held in self.held.items() if held.token is not None}

    # -------------------------------------------------------- take, release

    def take(self) -> None:
        """Every key under the move's run id, or RunBusy naming the holder (the keys taken stay in self.held for
        `release`, which the caller runs in any case)."""
        for key in self.keys:
            outcome = self._acquire(key)
            if outcome["decision"] == self.lock.BUSY:
                holder = outcome["holder"] or {}
                raise RunBusy(self.inventory, run_id=str(holder.get("run_id") or ""), pid=holder.get("pid"),
                              since=str(holder.get("started_at") or ""), host=str(holder.get("hostname") or ""),
                              runbook=str(holder.get("runbook") or ""))

    def release(self) -> None:
        keepers = []
        for key in reversed(list(self.held)):
            held = self.held.pop(key)
            if self.shared and _etcd().stop_keeper(*held.keeper):
                keepers.append(held.keeper[0])
            try:
                self.store.release(key, self.run_id)
            except Exception:  # directory: the record names this process, taken over once it ended; etcd: the
                log.exception("could not release the run lock for %s", key)  # lease expires by itself
        reap(keepers + self.stopped_keepers)
    def _acquire(self, key: str) -> Dict[str, Any]:
        record = self.lock.holder_record(key, self.run_id, os.getpid(), self.lock.DEFAULT_LEASE_SECONDS,
                                         runbook=self.runbook, operator=self.operator)
        outcome = self.store.acquire(record)
        decision = outcome["decision"]
        if decision == self.lock.BUSY:
            return outcome
        if decision == self.lock.TAKE_OVER:
            log.warning("took over the run lock for %s from %s, because %s", key,
                        self.lock.describe_holder(outcome["holder"]), outcome["reason"])
        held = HeldKey(key)
        if self.shared:
            stored = outcome["record"]
            held.token, held.lease_id = int(stored["token"]), int(stored["lease_id"])
            previous = self.held.get(key)
            if previous is not None and previous.lease_id == held.lease_id:
                held.keeper = previous.keeper  # the same lease: its keeper runs already
            else:
                if previous is not None:  # a lost lease: its keeper has stopped or is about to
                    _etcd().stop_keeper(*previous.keeper)
                    self.stopped_keepers.append(previous.keeper[0])
                held.keeper = self._keep(key, held.lease_id, decision)
        self.held[key] = held
        return outcome

    def _keep(self, key: str, lease_id: int, decision: str) -> Tuple[Optional[int], Optional[int]]:
        """Start the keeper of a lease just taken; a keeper that cannot start gives the key back (fail closed)."""
        try:
            return _etcd().start_keeper(self.store.config, lease_id, os.getpid())
        except self.lock.LockStoreError:
            if decision == self.lock.TAKE:
                self.store.release(key, self.run_id)
            raise

    # -------------------------------------------------------- before each step

    def before_step(self, phase: str) -> Optional[str]:
        """None when the step may run under the move's lock, else why it must not (the step's failure message)."""
        lost = self.lost()
        if lost is None:
            return None
        if phase == FORWARD:
            return (f"stopped before this step, which did not start (nothing of it changed): {lost}. Another "
                    "controller may hold the targets now")
        return self.take_back(lost)

    def guard(self, runner: StepRunner) -> StepRunner:
        """The engine's step runner, each call made only when before_step allows it (else a failed step saying
        why, so the engine undoes before the point of no return and stops after it)."""

        def guarded(step: WorkflowStep, call: Call, arguments: Dict[str, Any], phase: str) -> StepOutcome:
            with self._checking:
                refusal = self.before_step(phase)
            if refusal is not None:
                return StepOutcome(ok=False, message=refusal)
            return runner(step, call, arguments, phase)

        return guarded

    def lost(self) -> Optional[str]:
        """Why the move no longer holds every key with the token and lease it took, or None while it does. The
        directory store has nothing to lose: its records name this process, which is alive to ask."""
        if not self.shared:
            return None
        try:
            for key, held in self.held.items():
                still, found = self.store.still_held(key, held.token, held.lease_id)
                if not still:
                    return (f"run {self.run_id} no longer holds the run lock for {key} (fencing token "
                            f"{held.token}): {found}")
        except self.lock.LockStoreError as exc:
            return f"whether run {self.run_id} still holds its run lock cannot be checked (fails closed): {exc}"
        return None

    def take_back(self, lost: str) -> Optional[str]:
        """Before an undo: every key held again under the move's run id (a new lease and token where it was lost),
        or why the undo must not run."""
        try:
            for key in self.keys:
                outcome = self._acquire(key)
                if outcome["decision"] == self.lock.BUSY:
                    return (f"the undo was not run: {lost}, and {self.lock.describe_holder(outcome['holder'])} holds "
                            f"it now. Nothing was changed by this undo; the region left is not verified to serve "
                            f"again: wait for that run to end, then run the move again")
        except self.lock.LockStoreError as exc:
            return f"the undo was not run: {lost}; it could not be taken back: {exc}"
        log.warning("run %s took its run lock back before undoing (%s); fencing tokens now %s", self.run_id, lost,
                    self.tokens())
        return None


class OwnersLock(MoveLock):
    """The keys of a run that runs inside another (a composed runbook as a drill's recovery): every key already held by
    the owner's run id, which this run uses and never takes, rewrites nor releases. Its `run_id` is the owner's: the
    children's run_lock looks the records up under it. Before each step it checks the owner still holds them all."""

    def __init__(self, settings: Mapping[str, Any], keys: List[str], owner: str, runbook: str,
                 operator: Optional[str], inventory: str) -> None:
        super().__init__(settings, keys, owner, runbook, operator, inventory)

    def adopt(self) -> Optional[str]:
        """None once every key is found held by the owner (a live process for the directory store, a live lease for
        etcd), its token and lease noted for the fencing checks; else why not (nothing is changed either way)."""
        for key in self.keys:
            found = self.store.inspect(key, self.run_id)
            holder = found.get("holder") or {}
            if found["decision"] != self.lock.HELD:
                return f"{key}: {self.lock.describe_holder(holder) if holder else 'not held'}"
            alive, reason = self._owner_alive(holder)
            if not alive:
                return f"{key}: run {self.run_id}'s record is there but {reason}"
            self.held[key] = HeldKey(key, token=holder.get("token") if self.shared else None,
                                     lease_id=holder.get("lease_id") if self.shared else None)
        return None

    def _owner_alive(self, holder: Mapping[str, Any]) -> Tuple[bool, str]:
        if not self.shared:
            return self.lock.holder_liveness(holder)
        left, _granted = self.store.client.time_to_live(holder["lease_id"]) if holder.get("lease_id") else (-1, 0)
        return left > 0, f"its etcd lease has {left} s left"

    def lost(self) -> Optional[str]:
        if self.shared:
            return super().lost()
        try:  # the directory store: the owner's records must still name the owner
            for key in self.keys:
                found = self.store.inspect(key, self.run_id)
                if found["decision"] != self.lock.HELD:
                    return f"run {self.run_id} no longer holds the run lock for {key}: {found['reason']}"
        except self.lock.LockStoreError as exc:
            return f"whether run {self.run_id} still holds its run lock cannot be checked (fails closed): {exc}"
        return None

    def take_back(self, lost: str) -> Optional[str]:
        # The keys are the owner's: taking them again under its id from here would hide its loss from it.
        return (f"the undo was not run: {lost}; they are run {self.run_id}'s, which this run does not take back. "
                "Nothing was changed by this undo")

    def release(self) -> None:
        self.held.clear()  # the owner's records stay as they are; the owner releases them


def adopt_owners(settings: Mapping[str, Any], keys: List[str], owner: str, runbook: str, operator: Optional[str],
                 inventory: str) -> Optional[OwnersLock]:
    """The owner's lock when run `owner` holds every key, else None (the run then takes its own, as any run)."""
    borrowed = OwnersLock(settings, keys, owner, runbook, operator, inventory)
    try:
        why_not = borrowed.adopt()
    except borrowed.lock.LockStoreError as exc:
        raise MoveLockUnavailable(f"the run lock over the move cannot be read, nothing was changed: {exc}") from None
    if why_not is not None:
        log.info("run %s does not hold every key (%s): this run takes its own", owner, why_not)
        return None
    return borrowed


@contextmanager
def hold(settings: Mapping[str, Any] | str, keys: List[str], run_id: str, runbook: str, operator: Optional[str],
         inventory: str, owner: Optional[str] = None) -> Iterator[MoveLock]:
    """Every key taken under run_id for the duration of the block (a str: the directory store's folder), released at
    its end; RunBusy naming the holder when one is busy; MoveLockUnavailable when the store cannot be used.
    With `owner` (a run this one runs inside): when that run holds every key, the block runs under its lock
    (OwnersLock), which is left as it was; otherwise as without it, so a key the owner holds and a key it does not
    make this run busy (the owner named), and a key held by a third run makes it busy (that run named)."""
    if isinstance(settings, str):
        settings = {"kind": _lock_module().STORE_DIRECTORY, "store_dir": settings}
    borrowed = adopt_owners(settings, keys, owner, runbook, operator, inventory) if owner else None
    if borrowed is not None:
        yield borrowed
        return
    move = MoveLock(settings, keys, run_id, runbook, operator, inventory)
    try:
        try:
            move.take()
        except move.lock.LockStoreError as exc:
            raise MoveLockUnavailable(f"the run lock over the move could not be taken, nothing was changed: {exc}"
                                      ) from None
        yield move
    finally:
        move.release()


def gone_holders(settings: Mapping[str, Any], keys: List[str], runbook: str, runs_dir: Path
                 ) -> List[Dict[str, Any]]:
    """The holders of these keys whose run is gone (compose/journal.py resumes such a run's move). Read before any
    key is taken. Directory store: the records whose process is gone. etcd deletes a killed holder's key itself once
    its lease expires, so what a killed move leaves is its journal, still `running`, on the controller that ran it:
    those that hold none of the keys now."""
    lock = _lock_module()
    try:
        store = lock.make_store(settings)
        found = [store.inspect(key, "") for key in sorted(keys)]
    except lock.LockStoreError as exc:
        raise MoveLockUnavailable(f"the run lock over the move cannot be read, nothing was changed: {exc}") from None
    if store.kind != lock.STORE_ETCD:
        return [item["holder"] for item in found if item["decision"] == lock.TAKE_OVER and item["holder"]]
    holding = {str(item["holder"].get("run_id")) for item in found if item["holder"]}
    pattern = f"*-{runbook}-*/{journal_module.JOURNAL_FILE}"
    journals = (journal_module.load(path.parent) for path in runs_dir.glob(pattern))
    return [{"run_id": found_journal.run_id, "runbook": found_journal.runbook}
            for found_journal in sorted((j for j in journals if j is not None), key=lambda j: j.updated_at,
                                        reverse=True)
            if found_journal.interrupted and set(found_journal.locks) & set(keys)
            and found_journal.run_id not in holding]


def reap(pids: List[Optional[int]]) -> None:
    """Wait (bounded) for this process's keepers told to stop, so a long-lived caller (erlmcp_dr.run() in a
    service) keeps no zombie per move; one still running after the deadline is left (it ends with its lease)."""
    waiting = {pid for pid in pids if pid}
    wait = _module("_common.wait")

    def all_reaped() -> bool:
        for pid in list(waiting):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not ours, or reaped already
                done = pid
            if done:
                waiting.discard(pid)
        return not waiting

    try:
        wait.wait_for(all_reaped, KEEPER_EXIT_SECONDS, interval=0.05, what="the move's lease keepers to end")
    except wait.WaitTimeout:
        log.warning("lease keepers %s did not end in %s s; they end once their lease does", sorted(waiting),
                    KEEPER_EXIT_SECONDS)


def _etcd() -> Any:
    return _module("_lock.etcd")
