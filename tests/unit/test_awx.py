"""The AWX survey is derived from the same spec as the CLI and the playbook's validation."""

from __future__ import annotations

import json

from erlmcp_dr import awx, catalog, cli


def _questions(name: str) -> dict[str, dict]:
    return {q["variable"]: q for q in awx.survey_spec(catalog.load(name))["spec"]}


def test_every_parameter_is_a_question_with_its_type_default_and_choices():
    runbook = catalog.load("database_failover")
    questions = _questions("database_failover")
    assert list(questions) == list(runbook.parameters)
    assert questions["max_lag_bytes"]["type"] == "integer" and questions["max_lag_bytes"]["default"] == 1048576
    assert questions["fence_method"]["type"] == "multiplechoice"
    assert questions["fence_method"]["choices"] == ["stop", "read_only", "none"]
    assert questions["force"]["choices"] == ["true", "false"] and questions["force"]["default"] == "false"


def test_secrets_are_password_questions_without_defaults():
    question = _questions("database_failover")["pg_login_password"]
    assert question["type"] == "password" and "default" not in question


def test_required_parameters_are_required_questions():
    assert _questions("database_switchover")["candidate"]["required"] is True
    assert _questions("database_switchover")["catchup_timeout"]["required"] is False


def test_cli_prints_the_survey(capsys):
    assert cli.main(["survey", "database_rejoin"]) == 0
    survey = json.loads(capsys.readouterr().out)
    assert survey["name"] == "Database rejoin" and survey["spec"][0]["variable"] == "node"


def test_ranges_from_the_spec_reach_the_survey():
    questions = {q["variable"]: q for q in awx.survey_spec(catalog.load("database_switchover"))["spec"]}
    assert questions["wait_timeout"]["min"] == 1 and questions["wait_timeout"]["max"] == 3600
    assert "min" not in questions["candidate"]
