"""Every generated survey is one AWX would save, and its defaults are values the runbook accepts.

The rules are AWX's own, as its API checks a survey on POST (awx/api/views: JobTemplateSurveySpec,
ALLOWED_TYPES and _validate_spec_data; the API's job_template_survey_spec.md documents the format):
  - `name` and `description` strings, `spec` a non-empty list of objects;
  - each question has `type`, `question_name`, `variable` (strings) and `required` (a boolean); no variable twice;
  - `type` is one of text, textarea, password, multiplechoice, multiselect, integer, float;
  - a `default` other than "" has the type's Python type: str for text/textarea/password/choices, int for
    integer, float for float;
  - `min` and `max`, when present and not null, are integers, whatever the question type;
  - multiplechoice and multiselect questions list `choices`; a multiplechoice question has one default, and
    every default is one of the choices;
  - a default starting with `$encrypted$` only on a password question.
"""

from __future__ import annotations

from typing import Any

import pytest

from erlmcp_dr import awx, catalog, params

ALLOWED_TYPES: dict[str, type | tuple[type, ...]] = {
    "text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
    "integer": int, "float": float,
}


def awx_survey_errors(survey: dict[str, Any]) -> list[str]:
    """What AWX's survey_spec endpoint would answer 400 with (all of it, not only the first)."""
    errors = [f"field {field!r} is missing or not {kind.__name__}"
              for field, kind in (("name", str), ("description", str), ("spec", list))
              if not isinstance(survey.get(field), kind)]
    if errors:
        return errors
    if not survey["spec"]:
        return ["'spec' doesn't contain any items"]
    seen: set[str] = set()
    for index, item in enumerate(survey["spec"]):
        where = f"question {index} ({item.get('variable') if isinstance(item, dict) else item!r})"
        if not isinstance(item, dict):
            errors.append(f"{where} is not an object")
            continue
        errors += question_errors(item, where)
        if item.get("variable") in seen:
            errors.append(f"{where}: variable duplicated")
        seen.add(item.get("variable"))
    return errors


def question_errors(item: dict[str, Any], where: str) -> list[str]:
    errors = [f"{where}: {field!r} missing or not {kind.__name__}"
              for field, kind in (("type", str), ("question_name", str), ("variable", str), ("required", bool))
              if not isinstance(item.get(field), kind)]
    qtype = item.get("type")
    if qtype not in ALLOWED_TYPES:
        return errors + [f"{where}: type {qtype!r} is not one of {sorted(ALLOWED_TYPES)}"]
    default = item.get("default")
    if "default" in item and default != "" and not isinstance(default, ALLOWED_TYPES[qtype]):
        errors.append(f"{where}: default {default!r} is {type(default).__name__}, AWX wants {qtype}")
    if qtype in ("integer", "float") and isinstance(default, bool):
        errors.append(f"{where}: default {default!r} is a boolean")
    for bound in ("min", "max"):
        value = item.get(bound)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            errors.append(f"{where}: {bound} {value!r} is not an integer")
    if qtype in ("multiplechoice", "multiselect"):
        errors += choice_errors(item, where)
    if isinstance(default, str) and default.startswith("$encrypted$") and qtype != "password":
        errors.append(f"{where}: $encrypted$ default on a {qtype} question")
    return errors


def choice_errors(item: dict[str, Any], where: str) -> list[str]:
    if "choices" not in item:
        return [f"{where}: {item['type']} without choices"]
    choices = item["choices"].splitlines() if isinstance(item["choices"], str) else item["choices"]
    if "default" not in item:
        return []
    defaults = [d for d in item["default"].splitlines() if d.strip()] if isinstance(item["default"], str) \
        else item["default"]
    errors = []
    if item["type"] == "multiplechoice" and len(defaults) > 1:
        errors.append(f"{where}: multiplechoice with {len(defaults)} defaults")
    errors += [f"{where}: default {d!r} is not one of the choices {choices}" for d in defaults if d not in choices]
    return errors


RUNBOOKS = catalog.names()


@pytest.mark.parametrize("name", RUNBOOKS)
def test_awx_would_save_the_survey(name):
    survey = awx.survey_spec(catalog.load(name))
    assert awx_survey_errors(survey) == []


@pytest.mark.parametrize("name", RUNBOOKS)
def test_the_surveys_defaults_are_values_the_runbook_accepts(name):
    """What AWX sends for an untouched question (its default, as typed) passes the runbook's own validation."""
    runbook = catalog.load(name)
    defaults = {q["variable"]: q["default"] for q in awx.survey_spec(runbook)["spec"] if "default" in q}
    # The playbook's own check (runbook_params), on the questions that have a default.
    spec = {key: {**option, "required": False} for key, option in runbook.parameters.items() if key in defaults}
    validated, errors = params.runbook_params_module().validate(spec, defaults)
    assert errors == [], errors
    for view in runbook.parameter_views():
        if view.name in defaults:
            assert validated[view.name] == view.default, (view.name, defaults[view.name], validated[view.name])


def test_the_validator_refuses_what_awx_refuses():
    """The rules above catch the two surveys AWX refused before (a dict default, decimal limits)."""
    survey = {"name": "x", "description": "", "spec": [
        {"variable": "fields", "question_name": "Fields", "required": False, "type": "textarea", "default": {}},
        {"variable": "interval", "question_name": "Interval", "required": False, "type": "float", "min": 0.01,
         "max": 300, "default": 5},
        {"variable": "mode", "question_name": "Mode", "required": True, "type": "multiplechoice",
         "choices": ["a", "b"], "default": "c"},
    ]}
    errors = awx_survey_errors(survey)
    assert any("fields" in e and "default {}" in e for e in errors)
    assert any("interval" in e and "min 0.01" in e for e in errors)
    assert any("interval" in e and "default 5 is int" in e for e in errors)
    assert any("mode" in e and "'c' is not one of the choices" in e for e in errors)


def test_decimal_limits_are_widened_to_integers_and_dict_defaults_are_json():
    questions = {q["variable"]: q for q in awx.survey_spec(catalog.load("region_health"))["spec"]}
    assert questions["interval"]["type"] == "float"
    assert (questions["interval"]["min"], questions["interval"]["max"]) == (0, 300)
    assert questions["interval"]["default"] == 5.0
    fields = {q["variable"]: q for q in awx.survey_spec(catalog.load("incident_notify"))["spec"]}["fields"]
    assert fields["type"] == "textarea" and fields["default"] == "{}"
