"""AWX / Automation Platform survey specs, derived from a runbook's parameter spec.

The same argument spec drives the CLI, the Python API and the playbook's own
erlmcp.dr.runbook_params task; this turns it into the survey a job template shows, so an
operator in AWX sees the same parameters, defaults, choices and secrets.
"""

from __future__ import annotations

from typing import Any

from erlmcp_dr.catalog import Runbook

# Ansible argument-spec types -> AWX survey question types.
_SURVEY_TYPES = {"str": "text", "int": "integer", "float": "float", "list": "textarea", "dict": "textarea"}


def survey_spec(runbook: Runbook) -> dict[str, Any]:
    """The job template survey (`POST /api/v2/job_templates/N/survey_spec/`) for this runbook."""
    return {
        "name": runbook.title,
        "description": runbook.summary,
        "spec": [_question(name, option) for name, option in runbook.parameters.items()],
    }


def _question(name: str, option: dict[str, Any]) -> dict[str, Any]:
    question: dict[str, Any] = {
        "variable": name,
        "question_name": name.replace("_", " ").capitalize(),
        "question_description": _description(option),
        "required": bool(option.get("required")),
        "type": _question_type(option),
    }
    choices = _choices(option)
    if choices:
        question["choices"] = choices
    for bound in ("min", "max"):  # AWX enforces the same range as the runbook's own check
        if option.get(bound) is not None and question["type"] in ("integer", "float"):
            question[bound] = option[bound]
    if option.get("default") is not None and not option.get("no_log"):
        default = option["default"]
        question["default"] = str(default).lower() if isinstance(default, bool) else default
    return question


def _question_type(option: dict[str, Any]) -> str:
    if option.get("no_log"):
        return "password"
    if option.get("choices") or option.get("type") == "bool":
        return "multiplechoice"
    return _SURVEY_TYPES.get(option.get("type", "str"), "text")


def _choices(option: dict[str, Any]) -> list[str]:
    if option.get("choices"):
        return [str(choice) for choice in option["choices"]]
    return ["true", "false"] if option.get("type") == "bool" else []


def _description(option: dict[str, Any]) -> str:
    text = option.get("description", "")
    return " ".join(text) if isinstance(text, list) else str(text)
