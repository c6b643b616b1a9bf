"""AWX / Automation Platform survey specs, derived from a runbook's parameter spec.

The same argument spec drives the CLI, the Python API and the playbook's own
erlmcp.dr.runbook_params task; this turns it into the survey a job template shows, so an
operator in AWX sees the same parameters, defaults, choices and secrets.

AWX validates a survey when it is saved (awx/api/views: JobTemplateSurveySpec._validate_spec_data):
a default must have its question type's Python type (a string for text, textarea, password and
choice questions, an int for integer, a float for float), and `min`/`max` must be integers for
every question type. tests/unit/test_awx_surveys.py checks every generated survey against those rules.
"""

from __future__ import annotations

import json
import math
from typing import Any

from erlmcp_dr.catalog import ParameterView, Runbook

# Ansible argument-spec types -> AWX survey question types.
_SURVEY_TYPES = {"str": "text", "int": "integer", "float": "float", "list": "textarea", "dict": "textarea"}


def survey_spec(runbook: Runbook) -> dict[str, Any]:
    """The job template survey (`POST /api/v2/job_templates/N/survey_spec/`) for this runbook."""
    return {
        "name": runbook.title,
        "description": runbook.summary,
        "spec": [_question(view) for view in runbook.parameter_views()],
    }


def _question(view: ParameterView) -> dict[str, Any]:
    question: dict[str, Any] = {
        "variable": view.name,
        "question_name": view.name.replace("_", " ").capitalize(),
        "question_description": view.description,
        "required": view.required,
        "type": _question_type(view),
    }
    choices = _choices(view)
    if choices:
        question["choices"] = choices
    if question["type"] in ("integer", "float"):  # AWX enforces the runbook's own range
        question.update(_integer_bounds(view))
    if view.default is not None and not view.secret:
        question["default"] = _default(view, question["type"])
    return question


def _question_type(view: ParameterView) -> str:
    if view.secret:
        return "password"
    if view.choices or view.type == "bool":
        return "multiplechoice"
    return _SURVEY_TYPES.get(view.type, "text")


def _choices(view: ParameterView) -> list[str]:
    if view.choices:
        return [str(choice) for choice in view.choices]
    return ["true", "false"] if view.type == "bool" else []


def _integer_bounds(view: ParameterView) -> dict[str, int]:
    """AWX takes only integer limits, also on float questions: a decimal bound is widened to the
    integer around it (0.01 -> 0), so the survey never refuses a value the runbook accepts, and the
    playbook's runbook_params still refuses one outside the exact range, naming it."""
    bounds: dict[str, int] = {}
    for bound, value, widen in (("min", view.minimum, math.floor), ("max", view.maximum, math.ceil)):
        if value is not None:
            bounds[bound] = widen(value)
    return bounds


def _default(view: ParameterView, question_type: str) -> Any:
    """The default in the Python type AWX wants for the question type; what AWX sends back for it is
    what the CLI would take (a dict as JSON, a list comma-separated, as Ansible's argspec parses them)."""
    value = view.default
    if question_type == "integer":
        return int(value)
    if question_type == "float":
        return float(value)
    return _as_text(value)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)
