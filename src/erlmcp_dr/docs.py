"""The runbooks/ pages: generated from the playbooks, checked for drift in CI.

`runbook docs` writes them; `runbook docs --check` lists pages that differ from what the
playbooks say (drifted), are missing, or belong to no runbook (extra).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from erlmcp_dr import catalog
from erlmcp_dr.catalog import ParameterView, Runbook

INDEX = "README.md"
GENERATED = "<!-- Generated from {source} by `runbook docs`: edit the playbook, not this page. -->"


def default_out_dir() -> Path:
    """The checkout's runbooks/ folder; an installed collection is never written into (use --out)."""
    from erlmcp_dr import paths

    root = paths.checkout_root()
    if root is None:
        raise FileNotFoundError("runbook pages live in a checkout's runbooks/ folder and none was found: "
                                "pass --out DIR")
    return root / "runbooks"


def render_page(runbook: Runbook) -> str:
    parts = [
        GENERATED.format(source=f"playbooks/{runbook.path.name}"),
        f"# {runbook.title}",
        runbook.summary or "_No summary: add `summary` to the playbook's `runbook:` vars._",
        _facts_table(runbook),
        "## Parameters\n\n" + _parameters_table(runbook),
        "## Steps\n\n" + _steps_list(runbook),
        "## How to run\n\n" + _how_to_run(runbook),
    ]
    return "\n\n".join(parts) + "\n"


def render_index(runbooks: Dict[str, Runbook]) -> str:
    lines = [
        GENERATED.format(source="playbooks/*.yml"),
        "",
        "# Runbooks",
        "",
        "| Runbook | Title | Tier | RTO target | RPO target | Confirmation |",
        "|---|---|---|---|---|---|",
    ]
    for name, runbook in sorted(runbooks.items()):
        lines.append(
            f"| [{name}]({name}.md) | {_cell(runbook.title)} | {_dash(runbook.tier)} | {_secs(runbook.rto_seconds)} "
            f"| {_secs(runbook.rpo_seconds)} | {'required' if runbook.confirm else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def expected_pages(playbooks_dir: Optional[os.PathLike | str] = None) -> Dict[str, str]:
    """File name -> content of every page the catalog implies."""
    runbooks = catalog.discover(playbooks_dir)
    pages = {f"{name}.md": render_page(runbook) for name, runbook in runbooks.items()}
    pages[INDEX] = render_index(runbooks)
    return pages


def write_pages(out_dir: Optional[os.PathLike | str] = None,
                playbooks_dir: Optional[os.PathLike | str] = None) -> List[Path]:
    """Writes every page, removes pages of runbooks that no longer exist; returns the files written or removed."""
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    touched: List[Path] = []
    pages = expected_pages(playbooks_dir)
    for name, content in pages.items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            touched.append(path)
    for path in sorted(out.glob("*.md")):
        if path.name not in pages and _is_generated(path):
            path.unlink()
            touched.append(path)
    return touched


def check_pages(out_dir: Optional[os.PathLike | str] = None,
                playbooks_dir: Optional[os.PathLike | str] = None) -> List[str]:
    """Problems as 'drifted: x.md', 'missing: x.md', 'extra: x.md'; empty when the pages match the playbooks."""
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    pages = expected_pages(playbooks_dir)
    problems = []
    for name, content in sorted(pages.items()):
        path = out / name
        if not path.is_file():
            problems.append(f"missing: {path}")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"drifted: {path}")
    if out.is_dir():
        problems.extend(f"extra: {path}" for path in sorted(out.glob("*.md")) if path.name not in pages)
    return problems


# ---------------------------------------------------------------- sections


def _facts_table(runbook: Runbook) -> str:
    confirm = ("required: `runbook run` asks before it starts (`--yes` confirms in advance)"
               if runbook.confirm else "not required")
    rows = [
        ("Runbook", f"`{runbook.name}`"),
        ("Tier", _dash(runbook.tier)),
        ("RTO target", _secs(runbook.rto_seconds)),
        ("RPO target", _secs(runbook.rpo_seconds)),
        ("Confirmation", confirm),
        ("Targets", ", ".join(f"`{target}`" for target in runbook.targets) or "-"),
        ("Playbook", f"`playbooks/{runbook.path.name}`"),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {name} | {_cell(value)} |" for name, value in rows)


def _parameters_table(runbook: Runbook) -> str:
    if not runbook.parameters:
        return "None."
    lines = ["| Name | Type | Required | Default | Choices or range | Description |", "|---|---|---|---|---|---|"]
    for view in runbook.parameter_views():
        lines.append(
            f"| `{view.name}` | {_type(view)} | {'yes' if view.required else 'no'} | {_default(view)} "
            f"| {_choices(view)} | {_cell(view.description)} |"
        )
    return "\n".join(lines)


def _steps_list(runbook: Runbook) -> str:
    if not runbook.steps:
        return "None."
    return "\n".join(f"{'  ' * step.depth}- {_escape(step.name)}" for step in runbook.steps)


def _how_to_run(runbook: Runbook) -> str:
    extra = "".join(f" -e {name}=<{name}>" for name in runbook.required_parameters)
    yes = "  # asks for confirmation; --yes to skip" if runbook.confirm else ""
    if runbook.workflow is not None:  # a composed runbook: no plain-playbook entry point yet
        return "\n".join([
            "```sh",
            "# the plan: parameters and regions checked, the steps named (check mode, nothing changes)",
            f"runbook plan {runbook.name}{extra}",
            "# the steps and the point of no return are shown before the confirmation",
            f"runbook run {runbook.name} -i inventories/prod{extra}{yes}",
            f'# from Python: erlmcp_dr.run("{runbook.name}", inventory=..., extravars={{...}})',
            "```",
            "",
            "A composed runbook: each step is a child run of another runbook (`runbook report <run id>.<step>`). "
            "Its plan does not yet run its children's plans. Plain `ansible-playbook` and an AWX job template of the "
            "playbook run it through the same engine (`erlmcp.dr.composed_run`); a run killed mid-move is finished "
            "by the next run of the same command.",
        ])
    lines = [
        "```sh",
        "# what it would do (check mode, nothing changes), against the local lab: the default inventory",
        f"runbook plan {runbook.name}{extra}",
        "# run it against an inventory",
        f"runbook run {runbook.name} -i inventories/prod{extra}{yes}",
        "# the same playbook without the CLI (AWX runs it as a job template; same parameter checks)",
        f"ansible-playbook playbooks/{runbook.path.name} -i inventories/prod{extra}",
        "```",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- helpers


def _is_generated(path: Path) -> bool:
    with path.open(encoding="utf-8") as handle:
        return handle.readline().startswith("<!-- Generated from ")


def _type(view: ParameterView) -> str:
    kind = f"{view.type} of {view.elements}" if view.elements else view.type
    return kind + (" (secret)" if view.secret else "")


def _default(view: ParameterView) -> str:
    if view.default is None:
        return "-"
    if view.secret:
        return "(hidden)"
    return '`""`' if view.default == "" else f"`{_json(view.default)}`"


def _choices(view: ParameterView) -> str:
    if view.choices:
        return ", ".join(f"`{_json(choice)}`" for choice in view.choices)
    low, high = view.minimum, view.maximum
    if low is None and high is None:
        return "-"
    return f"{_json(low) if low is not None else '…'} to {_json(high) if high is not None else '…'}"


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _secs(value: Optional[int]) -> str:
    return "-" if value is None else f"{value} s"


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _escape(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")
