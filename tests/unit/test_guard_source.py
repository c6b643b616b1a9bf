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


def test_the_guard_loads_only_what_it_calls():
    """The guard is a fresh interpreter in every run (issue 19): its definitions and the warm client it imports load
    no typing, pathlib, hashlib (OpenSSL) or ctypes (imported by the guard's main, where prctl is called), and
    nothing of the runner or ansible. What the bare interpreter already loads here (a sitecustomize) is not counted."""
    import subprocess
    import sys

    listing = "\nimport sys\nprint(' '.join(sorted(sys.modules)))\n"
    definitions = guard.guard_source().replace(guard._GUARD_MAIN, "")
    assert definitions.startswith("from __future__ import annotations\n")
    loaded = subprocess.run([sys.executable, "-c", definitions + "\nfrom erlmcp_dr.warm import client" + listing],
                            capture_output=True, text=True, check=True).stdout.split()
    bare = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, check=True).stdout.split()
    assert "erlmcp_dr.warm.client" in loaded
    heavy = {"typing", "pathlib", "hashlib", "_hashlib", "ctypes", "inspect", "logging", "erlmcp_dr.runner",
             "erlmcp_dr.guard", "ansible", "ansible_runner"}
    assert sorted((heavy & set(loaded)) - set(bare)) == []
