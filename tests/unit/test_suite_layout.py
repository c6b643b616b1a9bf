"""The one pytest run covers tests/unit and tests/integration together (rootdir-relative imports, no packages).
Two test modules with one basename make the second an import error, and `from conftest import ...` run inside a test
gets whichever conftest was imported last: both broke a CI run that the per-folder runs had passed."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def python_modules() -> list[Path]:
    return sorted(path for path in TESTS.rglob("*.py") if path.name != "conftest.py" and "fixtures" not in path.parts)


def test_every_test_module_basename_is_unique_across_the_folders() -> None:
    counts = Counter(path.name for path in python_modules())
    assert [name for name, count in counts.items() if count > 1] == []


def test_conftest_is_imported_only_at_module_level() -> None:
    late = []
    for path in python_modules():
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "conftest" and id(node) not in top_level:
                late.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert late == []
