"""AWX / Automation Platform survey specs, derived from a runbook's parameter spec.

The same argument spec drives the CLI, the Python API and the playbook's own
erlmcp.dr.runbook_params task; this turns it into the survey a job template shows, so an
operator in AWX sees the same parameters, defaults, choices and secrets.
"""

from __future__ import annotations

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
    for bound, value in (("min", view.minimum), ("max", view.maximum)):  # AWX enforces the runbook's own range
        if value is not None and question["type"] in ("integer", "float"):
            question[bound] = value
    if view.default is not None and not view.secret:
        question["default"] = str(view.default).lower() if isinstance(view.default, bool) else view.default
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
