"""Observers of `runbook watch` run in threads of one process, for the lab's tests and benchmarks
(tests/integration/test_watch_trigger.py, benchmarks/watch_partition.py): each is a real Observer
(src/erlmcp_dr/watch/observer.py) with its own etcd session and lease, built from its own inventory exactly as the
`runbook watch` command builds it, and every report it made is kept in order.

    with watching(("obs-a", inventory), ("obs-b", inventory), ("witness", blind)) as group:
        group["witness"].about("a")     # its reports about region a (status "ok" only, unless asked)
        group.start("obs-c", other)     # one more, stopped with the others
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from erlmcp_dr.watch import settings as watch_settings
from erlmcp_dr.watch.observer import Observer

HANG_GUARD = 300.0  # seconds a stopped observer's thread gets to end (it waits for a regional_failover it started)


class ThreadedObserver:
    """One observer watching in a thread (started by start()); every report it made, in order."""

    def __init__(self, name: str, inventory: Path, settings: watch_settings.WatchSettings | None = None) -> None:
        self.name, self.inventory = name, inventory
        settings = settings or watch_settings.parse(watch_settings.inventory_variables(inventory))
        self.observer = Observer(settings, name, inventory)
        self.reports: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.observer.watch, args=(self.stop, self.reports.append),
                                       name=f"observer-{name}", daemon=True)

    def start(self) -> ThreadedObserver:
        self.thread.start()
        return self

    def halt(self, hang_guard: float = HANG_GUARD) -> None:
        """Stop after the check under way; the observer revokes its lease (its verdicts go) as a clean stop does."""
        self.stop.set()
        self.thread.join(hang_guard)

    def about(self, region: str, since: int = 0, every_status: bool = False) -> list[dict[str, Any]]:
        """Its view of `region` in each report from `since` on, with the report's status: only the checks that
        reached etcd (status "ok", the ones with a decision) unless every_status."""
        return about(self.reports[since:], region, every_status)


def about(reports: list[dict[str, Any]], region: str, every_status: bool = False) -> list[dict[str, Any]]:
    """`region`'s part of each report, with the report's status (see ThreadedObserver.about)."""
    return [dict(report["regions"][region], status=report.get("status")) for report in reports
            if every_status or report.get("status") == "ok"]


class ObserverGroup(dict):  # type: ignore[type-arg]  # name -> ThreadedObserver
    def start(self, name: str, inventory: Path, settings: watch_settings.WatchSettings | None = None
              ) -> ThreadedObserver:
        self[name] = ThreadedObserver(name, inventory, settings).start()
        return self[name]

    def halt_all(self, hang_guard: float = HANG_GUARD) -> None:
        """Every observer told to stop first, then each awaited: they end their checks side by side."""
        for each in self.values():
            each.stop.set()
        for each in self.values():
            each.halt(hang_guard)


@contextmanager
def watching(*specs: tuple[str, Path], hang_guard: float = HANG_GUARD) -> Iterator[ObserverGroup]:
    """Observers (name, inventory) watching until the block ends, with any the block starts meanwhile."""
    group = ObserverGroup()
    try:
        for name, inventory in specs:
            group.start(name, inventory)
        yield group
    finally:
        group.halt_all(hang_guard)
