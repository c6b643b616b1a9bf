"""An error never echoes a long value whole (issue 16 row 11: a 100 kB value came back whole in the message): it
quotes the first characters and says the length, on the CLI's -e parsing, unknown parameter names and values."""

from __future__ import annotations

from pathlib import Path

import pytest

from erlmcp_dr import catalog, params
from erlmcp_dr.errors import ParameterError

BIG = "x" * 100_000
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"


@pytest.fixture
def smoke() -> catalog.Runbook:
    return catalog.load("local_smoke", FIXTURES)


@pytest.mark.parametrize("item", [BIG, f"{BIG}=1", '{"a": [' + BIG])
def test_an_unreadable_or_unknown_extra_var_is_quoted_short(smoke: catalog.Runbook, item: str) -> None:
    with pytest.raises(ParameterError) as caught:
        params.validate(smoke, params.parse_extra_vars([item], smoke))
    message = str(caught.value)
    assert len(message) < 1000 and "characters)" in message, message[:300]
    assert "100000 characters" in message or "100007 characters" in message


def test_a_long_value_of_a_known_parameter_is_quoted_short(smoke: catalog.Runbook) -> None:
    with pytest.raises(ParameterError) as caught:
        params.validate(smoke, {"mode": BIG})
    message = str(caught.value)
    assert len(message) < 1000 and "(100000 characters)" in message, message[:300]


def test_the_playbook_side_check_quotes_unknown_names_short() -> None:
    errors = params.runbook_params_module().validate({"greeting": {"type": "str"}}, {BIG: 1})[1]
    assert errors == [f"unsupported parameter {'x' * 80!r}... (100000 characters); supported parameters: greeting"]
