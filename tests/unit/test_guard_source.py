"""The guard's script is built from guard.py's own functions without tokenizing them (issue 19: every run's fixed
cost; guard.top_level_sources), and its text is what inspect.getsource gives."""

from __future__ import annotations

import inspect

import pytest

from erlmcp_dr import guard


@pytest.mark.parametrize("name", guard.GUARD_FUNCTIONS)
def test_each_guard_function_is_copied_as_inspect_reads_it(name):
    function = getattr(guard, name)
    assert guard.top_level_sources([function]) == [inspect.getsource(function)]


def test_the_guard_is_built_without_tokenizing_its_functions(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("inspect.getsource tokenizes every function of the guard, in every run")

    expected = guard.guard_source()
    monkeypatch.setattr(inspect, "getsource", refuse)
    built = guard.guard_source()
    assert built == expected
    compile(built, "guard.py", "exec")
    for name in guard.GUARD_FUNCTIONS:
        assert f"\ndef {name}(" in built
