"""The benchmarks and the controller package call the project's modules by name, often through an alias
(`from erlmcp_dr.lab import regions as lab_regions`). A name that moves breaks them only when that line runs:
peer_patroni called `lab._port_free` for a round after the lab became a package (no test runs the benchmarks), and
the drill's fault called `lab_regions._alive` after a clean-up moved it. Every attribute such code reads from a
module of the project must exist."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ROOT = Path(__file__).resolve().parents[2]
CHECKED = sorted([*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "src" / "erlmcp_dr").rglob("*.py")])
PROJECT = ("erlmcp_dr", "ansible_collections.erlmcp.dr")


def project_modules(tree: ast.Module) -> dict[str, object]:
    """The names a benchmark binds to the project's modules (`from erlmcp_dr.lab import lifecycle as lab`)."""
    bound: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PROJECT):
            for alias in node.names:
                try:
                    bound[alias.asname or alias.name] = importlib.import_module(f"{node.module}.{alias.name}")
                except ModuleNotFoundError:
                    continue  # a function or class, not a module: `from x import name` fails at import if missing
    return bound


@pytest.mark.parametrize("path", CHECKED, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_project_name_read_through_a_module_alias_exists(path: Path) -> None:
    ensure_collection_importable()
    tree = ast.parse(path.read_text(), str(path))
    rebound = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    rebound |= {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)}
    modules = {name: module for name, module in project_modules(tree).items() if name not in rebound}
    missing = sorted({f"{node.value.id}.{node.attr} (line {node.lineno})" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                      and node.value.id in modules and not hasattr(modules[node.value.id], node.attr)})
    assert not missing, f"{path.name} reads names its modules do not have: {', '.join(missing)}"
