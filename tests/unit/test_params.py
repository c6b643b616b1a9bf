"""Parameters are checked with Ansible's own argument spec validator; -e arguments are parsed like ansible's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erlmcp_dr import catalog, params
from erlmcp_dr.errors import ParameterError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"


@pytest.fixture(scope="module")
def smoke():
    return catalog.load("local_smoke", FIXTURES)


@pytest.fixture(scope="module")
def guarded():
    return catalog.load("guarded", FIXTURES)


def test_values_are_coerced_to_their_spec_types(smoke):
    values = params.validate(smoke, {"repeat": "3", "fail_step": "yes", "hosts_to_check": "a,b", "greeting": 42})
    assert values == {"repeat": 3, "fail_step": True, "hosts_to_check": ["a", "b"], "greeting": "42"}


def test_defaults_are_not_injected(smoke):
    assert params.validate(smoke, {}) == {}
    assert params.validate(smoke, None) == {}
    assert params.validate(smoke, {"mode": "fast"}) == {"mode": "fast"}


def test_unknown_parameter_is_named_with_the_valid_ones(smoke):
    with pytest.raises(ParameterError) as caught:
        params.validate(smoke, {"greting": "hi"})
    assert caught.value.parameter == "greting"
    message = str(caught.value)
    assert "unsupported parameter 'greting'" in message
    assert "Did you mean 'greeting'?" in message
    assert "Supported parameters include: api_token, fail_step, greeting, hosts_to_check, mode, repeat" in message


def test_missing_required_parameter_is_named_with_how_to_pass_it(guarded):
    with pytest.raises(ParameterError) as caught:
        params.validate(guarded, {"wait_seconds": 5})
    assert caught.value.parameter == "target"
    assert "missing required parameter 'target' (Where to point things.)" in str(caught.value)
    assert "-e target=VALUE" in str(caught.value)


def test_wrong_type_names_the_parameter(smoke):
    with pytest.raises(ParameterError) as caught:
        params.validate(smoke, {"repeat": "many"})
    assert caught.value.parameter == "repeat"
    assert "runbook 'local_smoke'" in str(caught.value)
    assert "int" in str(caught.value)


def test_value_outside_choices_names_the_parameter(smoke):
    with pytest.raises(ParameterError) as caught:
        params.validate(smoke, {"mode": "slow"})
    assert caught.value.parameter == "mode"
    assert "fast, safe" in str(caught.value)


def test_extravars_must_be_a_mapping(smoke):
    with pytest.raises(ParameterError) as caught:
        params.validate(smoke, ["repeat=1"])
    assert caught.value.parameter == "extravars"


def test_secret_names_values_and_redaction(smoke):
    assert params.secret_names(smoke) == ["api_token"]
    values = {"api_token": "tok-123456", "greeting": "hi"}
    assert params.secret_values(smoke, values) == ["tok-123456"]
    assert params.redact(smoke, values) == {"api_token": "********", "greeting": "hi"}


def test_nested_no_log_options_are_secrets_too():
    runbook = catalog.Runbook(
        name="n", path=Path("n.yml"), title="n", summary="", tier=None, rto_seconds=None, rpo_seconds=None,
        confirm=False,
        parameters={"notify": {"type": "dict", "options": {"url": {"type": "str", "no_log": True},
                                                           "channel": {"type": "str"}}}},
    )
    values = {"notify": {"url": "https://hooks.example/T0/B0/XYZ", "channel": "#dr"}}
    assert params.validate(runbook, values) == values
    assert params.secret_values(runbook, values) == ["https://hooks.example/T0/B0/XYZ"]
    assert params.redact(runbook, values) == {"notify": {"url": "********", "channel": "#dr"}}


# ---------------------------------------------------------------- -e parsing


def test_key_value_is_typed_from_the_spec_except_strings(smoke):
    parsed = params.parse_extra_vars(
        ["greeting=042", "repeat=3", "fail_step=true", "hosts_to_check=[pg-a, pg-b]", "api_token=a=b: c"], smoke
    )
    assert parsed == {
        "greeting": "042",  # str parameters keep exactly what was typed
        "repeat": 3,
        "fail_step": True,
        "hosts_to_check": ["pg-a", "pg-b"],
        "api_token": "a=b: c",
    }
    assert params.validate(smoke, parsed)["repeat"] == 3


def test_unknown_keys_stay_text_and_are_then_rejected(smoke):
    parsed = params.parse_extra_vars(["colour=12"], smoke)
    assert parsed == {"colour": "12"}
    with pytest.raises(ParameterError, match="colour"):
        params.validate(smoke, parsed)


def test_files_and_json_merge_in_order(smoke, tmp_path):
    (tmp_path / "vars.yml").write_text("greeting: from yaml\nrepeat: 2\n", encoding="utf-8")
    (tmp_path / "vars.json").write_text(json.dumps({"repeat": 5}), encoding="utf-8")
    parsed = params.parse_extra_vars(
        ["@vars.yml", f"@{tmp_path / 'vars.json'}", '{"mode": "fast"}', "greeting=last"], smoke, base_dir=tmp_path
    )
    assert parsed == {"greeting": "last", "repeat": 5, "mode": "fast"}


def test_empty_value_stays_an_empty_string(smoke):
    assert params.parse_extra_vars(["repeat="], smoke) == {"repeat": ""}


@pytest.mark.parametrize("item, parameter", [("novalue", "novalue"), ("=1", "=1"), ("@missing.yml", "@missing.yml"),
                                             ("{not json", "extravars"), ("[1, 2]", "[1, 2]")])
def test_unreadable_extra_vars_are_parameter_errors(smoke, tmp_path, item, parameter):
    with pytest.raises(ParameterError) as caught:
        params.parse_extra_vars([item], smoke, base_dir=tmp_path)
    assert caught.value.parameter == parameter


def test_file_must_hold_a_mapping(tmp_path):
    (tmp_path / "list.yml").write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ParameterError, match="must hold a mapping"):
        params.parse_extra_vars([f"@{tmp_path / 'list.yml'}"])


def test_unsafe_tags_in_a_file_are_plain_text(smoke, tmp_path):
    (tmp_path / "vars.yml").write_text('greeting: !unsafe "{{ lookup(\'pipe\', \'id\') }}"\n'
                                       'hosts_to_check: !unsafe ["{{ a }}", "b"]\n', encoding="utf-8")
    parsed = params.parse_extra_vars(["@vars.yml"], smoke, base_dir=tmp_path)
    assert parsed == {"greeting": "{{ lookup('pipe', 'id') }}", "hosts_to_check": ["{{ a }}", "b"]}


def test_range_errors_come_from_the_spec():
    spec_book = catalog.Runbook(
        name="r", path=Path("r.yml"), title="r", summary="", tier=None, rto_seconds=None, rpo_seconds=None,
        confirm=False, parameters={"wait_timeout": {"type": "int", "min": 1, "max": 3600}},
    )
    for value in ("0", "-1", "99999999999999999999"):
        with pytest.raises(ParameterError) as caught:
            params.validate(spec_book, params.parse_extra_vars([f"wait_timeout={value}"], spec_book))
        assert caught.value.parameter == "wait_timeout"
        assert "is out of range" in str(caught.value) and "expected an int from 1 to 3600" in str(caught.value)
        assert str(caught.value).startswith("runbook 'r': parameter 'wait_timeout'")
    assert params.validate(spec_book, {"wait_timeout": "3600"}) == {"wait_timeout": 3600}
