"""each_at_once (module_utils/_common/at_once.py): the nodes of a read are asked at once, the answers come back in the
order of the nodes, and a call's exception reaches the caller."""

from __future__ import annotations

import threading

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.at_once import each_at_once  # noqa: E402

DEADLINE = 30  # seconds a call waits for the others at the barrier: reached only if the calls ran one by one


def test_the_calls_run_at_once_and_answer_in_the_order_of_the_items() -> None:
    items = [3, 1, 2]
    barrier = threading.Barrier(len(items), timeout=DEADLINE)

    def answer(item: int) -> tuple[int, str]:
        barrier.wait()  # every call is running at the same time, or this breaks
        return item * 10, threading.current_thread().name

    answers = each_at_once(answer, items)

    assert [value for value, _thread in answers] == [30, 10, 20]
    assert len({thread for _value, thread in answers}) == len(items)


def test_a_failing_call_raises_once_every_call_ended() -> None:
    ended: list[int] = []

    def answer(item: int) -> int:
        if item == 2:
            raise ValueError("node 2 broke")
        ended.append(item)
        return item

    with pytest.raises(ValueError, match="node 2 broke"):
        each_at_once(answer, [1, 2, 3])
    assert sorted(ended) == [1, 3]


def test_one_item_or_none_runs_in_the_caller() -> None:
    assert each_at_once(lambda _item: threading.current_thread() is threading.main_thread(), ["only"]) == [True]
    assert each_at_once(lambda item: item, []) == []
