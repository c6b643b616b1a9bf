"""module_utils/_common/runbook_params (the one validation every entry point runs) and the action's trust check.

The table of bad values: each gets an error naming the parameter, what was found and what was expected.
"""

from __future__ import annotations

from typing import Any

import pytest
from ansible.template import trust_as_template

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.action import runbook_params as action  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common import runbook_params as rp  # noqa: E402

SPEC: dict[str, Any] = {
    "candidate": {"type": "str", "required": True, "description": "Host to promote."},
    "wait_timeout": {"type": "int", "default": 60, "min": 1, "max": 3600},
    "max_lag_bytes": {"type": "int", "default": 1048576, "min": 0},
    "ratio": {"type": "float", "min": 0.0, "max": 1.0},
    "fence_method": {"type": "str", "choices": ["stop", "read_only", "none"], "default": "stop"},
    "force": {"type": "bool", "default": False},
    "nodes": {"type": "list", "elements": "str"},
    "ports": {"type": "list", "elements": "int", "min": 1, "max": 65535},
    "notify": {"type": "dict", "options": {"retries": {"type": "int", "min": 0, "max": 10},
                                           "url": {"type": "str", "no_log": True}}},
    "pg_login_password": {"type": "str", "no_log": True},
    "unbounded": {"type": "int"},
}
BIG = 10 ** 20


def _errors(values: dict[str, Any]) -> list[str]:
    _validated, errors = rp.validate(SPEC, {"candidate": "pg-b", **values})
    return errors


def test_good_values_are_coerced_and_defaults_filled():
    validated, errors = rp.validate(SPEC, {"candidate": "pg-b", "wait_timeout": "30", "force": "yes",
                                           "nodes": "pg-a,pg-c", "ports": ["5432"], "notify": {"retries": "2"}})
    assert errors == []
    assert validated["wait_timeout"] == 30 and validated["force"] is True
    assert validated["nodes"] == ["pg-a", "pg-c"] and validated["ports"] == [5432]
    assert validated["max_lag_bytes"] == 1048576 and validated["fence_method"] == "stop"
    assert validated["notify"] == {"retries": 2, "url": None}


def test_min_and_max_are_doc_keys_stripped_before_ansible_sees_them():
    stripped = rp.strip_doc_keys(SPEC)
    assert "min" not in stripped["wait_timeout"] and "max" not in stripped["ports"]
    assert "min" not in stripped["notify"]["options"]["retries"]
    assert SPEC["wait_timeout"]["min"] == 1  # the caller's spec is left alone


@pytest.mark.parametrize("values, expected", [
    # ranges
    ({"wait_timeout": -1}, "parameter 'wait_timeout' is out of range: got int -1 (below the minimum 1); "
                           "expected an int from 1 to 3600"),
    ({"wait_timeout": 0}, "parameter 'wait_timeout' is out of range: got int 0 (below the minimum 1)"),
    ({"wait_timeout": BIG}, f"parameter 'wait_timeout' is out of range: got int {BIG} (above the maximum 3600)"),
    ({"wait_timeout": "99999999999999999999"}, "parameter 'wait_timeout' is out of range: got int "
                                               "99999999999999999999 (above the maximum 3600)"),
    ({"max_lag_bytes": -5}, "parameter 'max_lag_bytes' is out of range: got int -5 (below the minimum 0); "
                            "expected an int of at least 0"),
    ({"max_lag_bytes": BIG}, "above the maximum 9223372036854775807"),
    ({"unbounded": BIG}, "parameter 'unbounded' is out of range: got int 100000000000000000000 (above the maximum "
                         "9223372036854775807); expected an int that fits in 64 bits"),
    ({"unbounded": -BIG}, "below the minimum -9223372036854775808"),
    ({"ratio": 1.5}, "parameter 'ratio' is out of range: got float 1.5 (above the maximum 1); expected a number "
                     "from 0 to 1"),
    ({"ratio": "nan"}, "parameter 'ratio' is out of range: got float nan (not a finite number)"),
    ({"ratio": "inf"}, "got float inf (not a finite number)"),
    ({"ports": [5432, 0]}, "parameter 'ports[1]' is out of range: got int 0 (below the minimum 1)"),
    ({"notify": {"retries": 11}}, "parameter 'notify.retries' is out of range: got int 11 (above the maximum 10)"),
    # types
    ({"wait_timeout": "soon"}, "parameter 'wait_timeout' must be an int from 1 to 3600: got str 'soon'"),
    ({"wait_timeout": 1.5}, "parameter 'wait_timeout' must be an int from 1 to 3600: got float 1.5"),
    ({"wait_timeout": True}, "parameter 'wait_timeout' must be an int from 1 to 3600: got bool True"),
    ({"wait_timeout": [60]}, "parameter 'wait_timeout' must be an int from 1 to 3600: got list [60]"),
    ({"wait_timeout": {"s": 60}}, "parameter 'wait_timeout' must be an int from 1 to 3600: got dict {'s': 60}"),
    ({"unbounded": "x"}, "parameter 'unbounded' must be an int: got str 'x'"),
    ({"candidate": ["pg-a", "pg-b"]}, "parameter 'candidate' must be a str: got list ['pg-a', 'pg-b']; "
                                      "pass a single value"),
    ({"candidate": {"host": "pg-b"}}, "parameter 'candidate' must be a str: got dict {'host': 'pg-b'}"),
    ({"force": "perhaps"}, "parameter 'force' must be a bool: got str 'perhaps'"),
    ({"nodes": {"a": 1}}, "parameter 'nodes' must be a list of str: got dict {'a': 1}"),
    ({"ports": ["http"]}, "parameter 'ports' must be a list of int: got list ['http']"),
    ({"notify": "slack"}, "parameter 'notify' must be a dict: got str 'slack'"),
    ({"notify": {"retries": "x"}}, "parameter 'notify.retries' must be an int"),
    # choices, required, unknown
    ({"fence_method": "shoot"}, "parameter 'fence_method' must be one of: stop, read_only, none; got str 'shoot'"),
    ({"fence_method": "STOP"}, "parameter 'fence_method' must be one of: stop, read_only, none; got str 'STOP'"),
    ({"candidate": None}, "missing required parameter 'candidate'"),
    ({"candiate": "pg-b"}, "unsupported parameter 'candiate'; supported parameters: candidate, fence_method"),
    ({"notify": {"channel": "#dr"}}, "unsupported parameter 'notify.channel'"),
    # text that cannot be a value
    ({"candidate": "pg-b\x00; rm -rf /"}, "parameter 'candidate' contains a NUL byte (\\x00)"),
    ({"nodes": ["pg-a", "p\x00"]}, "parameter 'nodes' contains a NUL byte (\\x00) at [1]"),
])
def test_bad_values_name_the_parameter_the_value_and_what_was_expected(values, expected):
    errors = _errors(values)
    assert any(expected in error for error in errors), errors


def test_every_problem_is_listed_at_once():
    errors = _errors({"wait_timeout": 0, "fence_method": "shoot", "nodes": {"a": 1}, "bogus": 1})
    assert len(errors) == 4, errors


@pytest.mark.parametrize("value", [
    "pg-b; rm -rf /", "$(id)", "`id`", "pg-b && touch /tmp/x", "pg-b | nc host 1", "'\"\\", "${HOME}",
    "ünïcödé-κόμβος-节点", "pg-b\n--flag", "x" * 100_000, "{{ not templated here }}", "",
])
def test_text_is_data_whatever_it_holds(value):
    validated, errors = rp.validate(SPEC, {"candidate": value})
    assert errors == [] and validated["candidate"] == value


def test_a_long_value_is_shortened_in_errors():
    errors = _errors({"wait_timeout": "9" * 100_000})
    assert errors and all(len(error) < 1000 for error in errors), [len(e) for e in errors]
    assert "(100000 characters)" in " ".join(errors) or "about 100000 digits" in " ".join(errors), errors


@pytest.mark.parametrize("values", [{"pg_login_password": ["hunter2-secret"]},
                                    {"notify": {"url": ["https://hooks.example/hunter2-secret"]}},
                                    {"pg_login_password": {"v": "hunter2-secret"}}])
def test_a_secret_value_never_appears_in_an_error(values):
    errors = _errors(values)
    assert errors and not any("hunter2-secret" in error for error in errors), errors
    assert any(rp.HIDDEN in error for error in errors), errors


def test_template_markers_are_found_anywhere():
    value = {"a": ["x", "{{ y }}"], "{%k": {"z": "{# c"}, "n": 5, "plain": "a { b } c"}
    assert rp.template_markers(value) == [("a[1]", "{{"), ("{%k (key)", "{%"), ("{%k.z", "{#")]
    assert rp.template_markers("no markers") == []
    assert rp.template_markers("#jinja2:variable_start_string:'[['\n[[ x ]]") == [("", "#jinja2:")]
    assert rp.template_markers(None) == []


def test_the_action_refuses_only_what_ansible_would_template():
    """Strings Ansible trusts (from -e, files, surveys) with markers are refused; the same text untrusted
    (the runner's !unsafe values) is data."""
    trusted = trust_as_template("{{ lookup('pipe', 'id') }}")
    plain = "{{ lookup('pipe', 'id') }}"  # untrusted, as !unsafe values are
    assert action.templated_values(trusted, "candidate") == [("candidate", "{{")]
    assert action.templated_values(plain, "candidate") == []
    nested = {"k": [plain, trusted], trust_as_template("{% key"): 1}
    assert action.templated_values(nested, "options") == [("options.k[1]", "{{"), ("options.{% key (key)", "{%")]
    message = action.template_error("candidate", [("candidate", "{{")])
    assert message.startswith("parameter 'candidate' contains template markers ({{ ... }}): runbook parameters "
                              "are data and are never templated")


def test_the_action_shows_secrets_masked():
    spec = {"candidate": {"type": "str"}, "pg_login_password": {"type": "str", "no_log": True}}
    assert action.shown(spec, {"candidate": "pg-b", "pg_login_password": "s3cret", }) == {
        "candidate": "pg-b", "pg_login_password": "********"}
    assert action.given_values(spec, {"candidate": "pg-b", "other": 1}) == {"candidate": "pg-b"}
