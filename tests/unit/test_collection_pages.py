"""The collection's own pages are true of what ships: version_added never names a release after the collection's
version, and COLLECTION_README.md (the Galaxy page) names every runbook and every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
VERSION = Version(GALAXY["version"])
README = (REPO / GALAXY["readme"]).read_text()


def documentation(path: Path) -> dict[str, Any]:
    """A module's DOCUMENTATION, or a filter's .yml page."""
    if path.suffix == ".yml":
        return yaml.safe_load(path.read_text())["DOCUMENTATION"]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
            return yaml.safe_load(node.value.value)
    raise AssertionError(f"{path} has no DOCUMENTATION")


def versions_added(doc: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "version_added":
                yield where or "(plugin)", str(value)
            else:
                yield from versions_added(value, f"{where}.{key}" if where else str(key))
    elif isinstance(doc, list):
        for item in doc:
            yield from versions_added(item, where)


PLUGIN_DOCS = sorted([*(REPO / "plugins" / "modules").glob("*.py"), *(REPO / "plugins" / "filter").glob("*.yml")])
MODULES = sorted(path.stem for path in (REPO / "plugins" / "modules").glob("*.py") if path.stem != "__init__")
RUNBOOKS = sorted(path.stem for path in (REPO / "playbooks").glob("*.yml"))


@pytest.mark.parametrize("path", PLUGIN_DOCS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_version_added_is_no_later_than_the_collections_version(path):
    found = list(versions_added(documentation(path)))
    assert found, f"{path.name} says no version_added"
    later = [(where, version) for where, version in found if Version(version) > VERSION]
    assert not later, f"{path.name}: version_added after galaxy.yml's {VERSION}: {later}"


def test_the_galaxy_readme_names_every_runbook():
    missing = [name for name in RUNBOOKS if f"`erlmcp.dr.{name}`" not in README]
    assert not missing, f"COLLECTION_README.md does not name the runbooks {missing}"


def test_the_galaxy_readme_names_every_module():
    missing = [name for name in MODULES if not re.search(rf"`(erlmcp\.dr\.)?{name}`", README)]
    assert not missing, f"COLLECTION_README.md does not name the modules {missing}"


def test_galaxy_yml_sends_nobody_to_a_made_up_address():
    for key in ("repository", "homepage", "issues", "documentation"):
        assert "example.invalid" not in str(GALAXY.get(key) or ""), key
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", tag) for tag in GALAXY["tags"]) and len(GALAXY["tags"]) <= 20
