"""The benchmarks call the project's modules by name, and no test runs them: a name that moves breaks `make bench`
silently (peer_patroni called `lab._port_free` for a round after the lab became a package). Every attribute a
benchmark reads from a module of the project must exist."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from erlmcp_dr.paths import ensure_collection_importable

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
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


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.py")), ids=lambda path: path.name)
def test_every_project_name_a_benchmark_reads_exists(path: Path) -> None:
    ensure_collection_importable()
    tree = ast.parse(path.read_text(), str(path))
    modules = project_modules(tree)
    missing = sorted({f"{node.value.id}.{node.attr} (line {node.lineno})" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                      and node.value.id in modules and not hasattr(modules[node.value.id], node.attr)})
    assert not missing, f"{path.name} reads names its modules do not have: {', '.join(missing)}"
