"""A passed parameters' check is remembered by content (issue 19: params_cache.py), so a `runbook` process that checks
again what it checked before does not import Ansible's validator; everything the answer depends on is in its key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from erlmcp_dr import catalog, params, params_cache
from erlmcp_dr.errors import ParameterError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"
VALIDATOR = "ansible.module_utils.common.arg_spec"

CHILD = """
import json, sys
from erlmcp_dr import catalog, params
runbook = catalog.load("local_smoke", sys.argv[1])
values = params.validate(runbook, {"repeat": "3", "greeting": 42, "hosts_to_check": "a,b"})
print(json.dumps({"values": values, "imported_validator": "VALIDATOR" in sys.modules}))
""".replace("VALIDATOR", VALIDATOR)


def _check_in_a_fresh_process(home: Path) -> dict:
    env = dict(os.environ, ERLMCP_DR_HOME=str(home))
    done = subprocess.run([sys.executable, "-c", CHILD, str(FIXTURES)], env=env, capture_output=True, text=True,
                          check=True, timeout=120, cwd=str(Path(__file__).parent))
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_check_made_before_does_not_import_ansibles_validator_again(tmp_path):
    first = _check_in_a_fresh_process(tmp_path / "home")
    second = _check_in_a_fresh_process(tmp_path / "home")
    assert first == {"values": {"repeat": 3, "greeting": "42", "hosts_to_check": ["a", "b"]},
                     "imported_validator": True}
    assert second == dict(first, imported_validator=False)


def test_the_key_is_everything_the_answer_depends_on(monkeypatch):
    spec = {"repeat": {"type": "int"}, "hosts": {"type": "list", "elements": "str"}}
    base = params_cache.key(spec, {"repeat": 1})
    assert base is not None and base == params_cache.key(dict(spec), {"repeat": 1})
    others = [params_cache.key(spec, {"repeat": value}) for value in (True, "1", 1.0, 2)]
    others.append(params_cache.key(dict(spec, repeat={"type": "int", "choices": [2]}), {"repeat": 1}))
    others.append(params_cache.key(spec, {"repeat": 1, "hosts": ["a"]}))
    monkeypatch.setattr(sys, "path", ["/elsewhere", *sys.path])  # another ansible or collection could be imported
    others.append(params_cache.key(spec, {"repeat": 1}))
    assert base not in others and len(set(others)) == len(others)


@pytest.mark.parametrize("given", [{"when": __import__("datetime").date(2026, 1, 1)}, {"hosts": ("a", "b")},
                                   {"ratio": float("nan")}, {"nested": {1: "a"}}])
def test_values_json_would_give_back_changed_are_not_cached(given):
    assert params_cache.key({"when": {"type": "raw"}}, given) is None


def test_a_spec_with_a_path_option_is_not_cached():
    # ansible expands ~ and $VARS in a path: its answer depends on the environment
    assert params_cache.key({"dir": {"type": "path"}}, {"dir": "~/x"}) is None
    assert params_cache.key({"outer": {"type": "dict", "options": {"files": {"type": "list", "elements": "path"}}}},
                            {}) is None


def test_a_changed_or_gone_validator_file_makes_the_entry_unused(home, tmp_path, monkeypatch):
    validator = tmp_path / "arg_spec.py"
    validator.write_text("one\n")
    monkeypatch.setattr(params_cache, "validator_files", lambda: [str(validator)])
    params_cache.store("smoke", "k1", {"repeat": 3})
    assert params_cache.lookup("smoke", "k1") == {"repeat": 3}
    assert params_cache.lookup("smoke", "k2") is None
    stamp = validator.stat()
    validator.write_text("two\n")  # the same size: the mtime, moved on, tells
    os.utime(validator, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))
    assert params_cache.lookup("smoke", "k1") is None
    params_cache.store("smoke", "k1", {"repeat": 3})
    validator.unlink()
    assert params_cache.lookup("smoke", "k1") is None


def test_secrets_and_failed_checks_are_never_written(home):
    runbook = catalog.load("local_smoke", FIXTURES)
    assert params.validate(runbook, {"api_token": "s3cr3t-value", "repeat": "2"}) == {"api_token": "s3cr3t-value",
                                                                                      "repeat": 2}
    for _ in range(2):  # refused each time, by the validator itself
        with pytest.raises(ParameterError):
            params.validate(runbook, {"repeat": "many"})
    folder = params_cache.cache_dir()
    written = "".join(path.read_text() for path in folder.glob("*")) if folder.exists() else ""
    assert "s3cr3t-value" not in written and "many" not in written
    params.validate(runbook, {"repeat": "2"})
    entries = json.loads((folder / "local_smoke.json").read_text())
    assert [entry["values"] for entry in entries.values()] == [{"repeat": 2}]
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert oct((folder / "local_smoke.json").stat().st_mode & 0o777) == "0o600"


def test_a_cached_answer_is_the_checks_answer(home):
    runbook = catalog.load("local_smoke", FIXTURES)
    given = {"repeat": "3", "fail_step": "yes", "hosts_to_check": "a,b", "greeting": 42}
    first = params.validate(runbook, given)
    assert params.validate(runbook, given) == first == {"repeat": 3, "fail_step": True, "hosts_to_check": ["a", "b"],
                                                        "greeting": "42"}
