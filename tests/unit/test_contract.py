"""The inventory contract's pure checks (module_utils/_common/contract.py)."""

from __future__ import annotations

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common import contract as _contract  # noqa: E402

HOST_VARS = {
    "pg_host": {"type": "str", "required": True},
    "pg_port": {"type": "int", "required": True},
    "pg_data_dir": {"type": "path", "required": True},
    "dr_region": {"type": "str"},
}
SECRET = {"type": "str", "no_log": True}


def test_good_values_pass():
    values = {"pg_host": "10.0.0.1", "pg_port": "5432", "pg_data_dir": "/data", "dr_region": "a"}
    assert _contract.vars_problems(values, HOST_VARS, "host db-1") == []


def test_every_problem_is_listed_once():
    values = {"pg_port": "abc", "pg_data_dir": ["x"], "dr_region": None}
    assert _contract.vars_problems(values, HOST_VARS, "host db-1") == [
        "host db-1: dr_region is empty (null), expected type str",
        "host db-1: pg_data_dir is ['x'] (list), expected type path",
        "host db-1: pg_host is not defined, expected type str",
        "host db-1: pg_port is 'abc' (str), expected type int",
    ]


@pytest.mark.parametrize(("value", "option", "fragment"), [
    (True, {"type": "int"}, "True (bool), expected type int"),
    (5.5, {"type": "int"}, "5.5 (float), expected type int"),
    ({"a": 1}, {"type": "str"}, "(mapping), expected type str"),
    ("", {"type": "path"}, "empty string"),
    ("maybe", {"type": "bool"}, "'maybe' (str), expected type bool"),
    ("c", {"type": "str", "choices": ["a", "b"]}, "expected one of a, b"),
    (["a", 1.5], {"type": "list", "elements": "int"}, "x[0] is 'a' (str), expected type int"),
])
def test_wrong_values_say_what_was_found_and_expected(value, option, fragment):
    problem = _contract.value_problem("x", value, option)
    assert problem is not None and fragment in problem


def test_secrets_are_never_shown():
    problem = _contract.value_problem("pg_login_password", {"hunter2-secret": 1}, SECRET)
    assert problem == "pg_login_password is a mapping (value hidden), expected type str"
    assert "hunter2" not in problem


def test_template_failures_are_reported():
    values = {"pg_host": "h", "pg_port": 1, "pg_data_dir": _contract.TemplateFailure("'nope' is undefined")}
    assert _contract.vars_problems(values, HOST_VARS, "host a") == [
        "host a: pg_data_dir could not be templated: 'nope' is undefined"]


def test_groups_missing_or_too_small():
    found = {"all": ["a"], "ungrouped": [], "databases": ["a"], "postgres": []}
    assert _contract.group_problems("pg", {"min_hosts": 1}, found) == [
        "group 'pg' is not in the inventory, expected at least 1 host(s) in it (groups found: databases, postgres)"]
    assert _contract.group_problems("postgres", {}, found) == ["group 'postgres' has 0 host(s), expected at least 1"]
    assert _contract.group_problems("databases", {"min_hosts": 1}, found) == []


def test_a_wrong_contract_is_a_playbook_bug():
    problems = _contract.contract_problems(
        {"postgres": {"min_hosts": -1, "host_vars": {"pg_port": {"type": "port"}}, "extra": 1}},
        {"pg_login_user": {"typ": "str"}})
    assert any("unknown keys extra" in p for p in problems)
    assert any("min_hosts must be a whole number" in p for p in problems)
    assert any("has type 'port'" in p for p in problems)
    assert any("unsupported keys typ" in p for p in problems)


def test_message_names_sources_and_the_design_doc():
    text = _contract.failure_message("the PostgreSQL runbooks", ["p1", "p2"], ["/inv/hosts.yml"])
    assert text.splitlines() == [
        "The inventory does not meet the contract of the PostgreSQL runbooks: 2 problem(s).",
        "  - p1",
        "  - p2",
        "Inventory source(s): /inv/hosts.yml.",
        "What the inventory must hold: see docs/design.md, section 'Inventory contract'.",
    ]
