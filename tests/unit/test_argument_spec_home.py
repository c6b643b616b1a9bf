"""One home for argument specs: a module's file defines its spec, its DOCUMENTATION says the same, and its action
plugin imports it.

Two kinds of drift this catches, both found in the tree before (issue 15, item 6): an action plugin (or the shared
start, plugins/plugin_utils/begin.py) validating its task against a spec of its own while the module file was a
documentation stub, so the page and the code could say different things; and a module whose DOCUMENTATION (with its
doc fragments) names, types, requires, defaults or offers choices its argument_spec() does not. ansible-test's
validate-modules compares the two as well, but only in the sanity run; this runs with the unit tests.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible.utils.plugin_docs import add_fragments  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ACTIONS = REPO / "plugins" / "action"
MODULES = REPO / "plugins" / "modules"
PLUGIN_UTILS = REPO / "plugins" / "plugin_utils"
COLLECTION = "ansible_collections.erlmcp.dr.plugins"
# validate-modules' test for an option that may hold a secret (ansible_test ... validate_modules/main.py): such an
# option says no_log explicitly, True, or False when it is a name and not a secret (run_lock's `key`).
SECRET_NAME = re.compile(r"(?:pass(?!ive)|secret|token|key)", re.I)
NOT_SECRET_SUFFIXES = ("_count", "_type", "_alg", "_algorithm", "_timeout", "_name", "_comment", "_bits", "_id",
                       "_identifier", "_period", "_file", "_filename")
NOT_SECRET_PARTS = ("publickey", "public_key", "keyusage", "key_usage", "keyserver", "key_server", "keysize",
                    "key_size", "keyservice", "key_service", "pub_key", "pubkey", "keyboard", "secretary")
# The two ways an action plugin may hand a spec to Ansible's validation: the module's function, called, or the class
# attribute that names it (EngineAction, BeginAction: ARGUMENT_SPEC = staticmethod(argument_spec)).
SPEC_CALLS = ("argument_spec()", "self.ARGUMENT_SPEC()")
# What a name for a spec may hold in an action plugin or a base: a reference to a module's function (the start's base
# defaults to the options every start takes, _common/begin_spec.py), or nothing yet (EngineAction's slot).
SPEC_NAME = re.compile(r"argument_?spec", re.I)
SPEC_REFERENCES = ("staticmethod(argument_spec)", "staticmethod(begin_argument_spec)", "None")


def _names(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.py") if p.stem != "__init__")


# ---------------------------------------------------------------- action plugins take the module's spec


def spec_problems(path: Path) -> list[str]:
    """What in an action plugin (or a plugin_utils base) defines or passes an argument spec of its own."""
    tree = ast.parse(path.read_text(), str(path))
    module = f"{COLLECTION}.modules.{path.stem}"
    problems = []
    imported_from = {alias.asname or alias.name: node.module for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) for alias in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "argument_spec":
            problems.append(f"line {node.lineno}: defines argument_spec(); the module file {module} is its home")
        if isinstance(node, ast.Assign):
            for target in node.targets:
                name = getattr(target, "id", None)
                if name and SPEC_NAME.search(name) and ast.unparse(node.value) not in SPEC_REFERENCES:
                    problems.append(f"line {node.lineno}: {name} = {ast.unparse(node.value)[:60]}: a spec of its own")
        if isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            given = None
            if called.endswith("validate_argument_spec"):
                given = next((k.value for k in node.keywords if k.arg == "argument_spec"), None)
            elif called.endswith("run_on_controller") and len(node.args) > 3:
                given = node.args[3]
            if given is not None and ast.unparse(given) not in SPEC_CALLS:
                problems.append(f"line {node.lineno}: {called} is given {ast.unparse(given)[:60]}, expected one of "
                                f"{', '.join(SPEC_CALLS)}")
    source = imported_from.get("argument_spec")
    if path.parent == ACTIONS and source is not None and source != module:
        problems.append(f"imports argument_spec from {source}; expected its own module {module}")
    return problems


def validates_arguments(path: Path) -> bool:
    """Whether the action plugin checks its task's arguments (directly, or through a base that does)."""
    text = path.read_text()
    return any(mark in text for mark in ("validate_argument_spec", "run_on_controller", "(EngineAction)",
                                         "(BeginAction)", "_VALID_ARGS"))


@pytest.mark.parametrize("name", _names(ACTIONS))
def test_an_action_plugin_takes_its_modules_argument_spec(name: str) -> None:
    path = ACTIONS / f"{name}.py"
    assert (MODULES / f"{name}.py").is_file(), f"plugins/action/{name}.py has no module file to document it"
    assert spec_problems(path) == []
    if validates_arguments(path):
        imported = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)
                    and node.module == f"{COLLECTION}.modules.{name}"
                    and "argument_spec" in [alias.name for alias in node.names]]
        assert imported, f"plugins/action/{name}.py validates its arguments but does not import argument_spec from " \
                         f"plugins/modules/{name}.py"


@pytest.mark.parametrize("name", _names(PLUGIN_UTILS))
def test_the_plugin_bases_keep_no_spec_of_their_own(name: str) -> None:
    assert spec_problems(PLUGIN_UTILS / f"{name}.py") == []


def test_the_check_finds_a_spec_kept_in_an_action_plugin(tmp_path: Path) -> None:
    """The check itself, on the shape plugins/action/run_lock.py had before the spec moved to its module."""
    kept = tmp_path / "run_lock.py"
    kept.write_text('ARGUMENT_SPEC = {"key": {"type": "str", "required": True}}\n\n\n'
                    "class ActionModule:\n"
                    "    def run(self, tmp=None, task_vars=None):\n"
                    "        return self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)\n")
    problems = spec_problems(kept)
    assert len(problems) == 2 and "a spec of its own" in problems[0] and "is given ARGUMENT_SPEC" in problems[1]


# ---------------------------------------------------------------- DOCUMENTATION says what the spec is


class CollectionFragments:
    """The part of ansible-core's doc fragment loader add_fragments uses, for this collection's fragments only."""

    def get(self, name: str) -> Any:
        prefix = "erlmcp.dr."
        if not name.startswith(prefix) or "." in name[len(prefix):]:
            return None
        try:
            fragment = importlib.import_module(f"{COLLECTION}.doc_fragments.{name[len(prefix):]}").ModuleDocFragment
        except ModuleNotFoundError:
            return None
        fragment.ansible_name = name
        return fragment


def documented_options(name: str) -> dict[str, Any]:
    module = importlib.import_module(f"{COLLECTION}.modules.{name}")
    doc = yaml.safe_load(module.DOCUMENTATION)
    add_fragments(doc, str(MODULES / f"{name}.py"), CollectionFragments(), is_module=True)
    return doc.get("options") or {}


def option_differences(documented: dict[str, Any], spec: dict[str, Any], where: str = "") -> list[str]:
    """Every way the documented options and the spec's differ (suboptions included)."""
    found = []
    for missing in sorted(set(spec) - set(documented)):
        found.append(f"{where}{missing}: in the spec, not documented")
    for extra in sorted(set(documented) - set(spec)):
        found.append(f"{where}{extra}: documented, not in the spec")
    for option in sorted(spec):
        doc, arg = documented.get(option) or {}, spec[option] or {}
        name = where + option
        if _may_be_secret(option, arg) and arg.get("no_log") is None:
            found.append(f"{name}: may hold a secret; the spec says no_log neither true nor false")
        if option not in documented:
            continue
        pairs = {
            "type": (doc.get("type", "str"), arg.get("type", "str")),
            "required": (bool(doc.get("required", False)), bool(arg.get("required", False))),
            "default": (doc.get("default"), arg.get("default")),
            "choices": (sorted(map(str, doc.get("choices") or [])), sorted(map(str, arg.get("choices") or []))),
            "elements": (doc.get("elements"), arg.get("elements")),
        }
        found += [f"{name}: {what} documented {d!r}, spec {a!r}" for what, (d, a) in pairs.items() if d != a]
        if arg.get("options") or doc.get("suboptions"):
            found += option_differences(doc.get("suboptions") or {}, arg.get("options") or {}, name + ".")
    return found


def _may_be_secret(option: str, arg: dict[str, Any]) -> bool:
    return bool(SECRET_NAME.search(option)) and not option.endswith(NOT_SECRET_SUFFIXES) \
        and not any(part in option for part in NOT_SECRET_PARTS) \
        and arg.get("type", "str") not in ("path", "bool") and arg.get("choices") is None


@pytest.mark.parametrize("name", _names(MODULES))
def test_a_modules_documentation_matches_its_argument_spec(name: str) -> None:
    module = importlib.import_module(f"{COLLECTION}.modules.{name}")
    assert callable(getattr(module, "argument_spec", None)), f"plugins/modules/{name}.py defines no argument_spec()"
    assert option_differences(documented_options(name), module.argument_spec()) == []


def test_the_comparison_finds_each_kind_of_difference() -> None:
    documented = {"stanza": {"type": "str", "required": True}, "after": {"type": "str", "choices": ["a", "b"]},
                  "retries": {"type": "int", "default": 3}, "old": {"type": "str"},
                  "members": {"type": "list", "elements": "dict", "suboptions": {"port": {"type": "int"}}}}
    spec = {"stanza": {"type": "str"}, "after": {"type": "str", "choices": ["a", "c"]},
            "retries": {"type": "float", "default": 5}, "api_token": {"type": "str"},
            "members": {"type": "list", "elements": "dict", "options": {"port": {"type": "int", "default": 1}}}}
    found = option_differences(documented, spec)
    assert found == [
        "api_token: in the spec, not documented",
        "old: documented, not in the spec",
        "after: choices documented ['a', 'b'], spec ['a', 'c']",
        "api_token: may hold a secret; the spec says no_log neither true nor false",
        "members.port: default documented None, spec 1",
        "retries: type documented 'int', spec 'float'",
        "retries: default documented 3, spec 5",
        "stanza: required documented True, spec False",
    ]
