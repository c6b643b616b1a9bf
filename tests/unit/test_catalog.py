"""The catalog reads runbooks from playbooks; docs renders and checks their pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from erlmcp_dr import catalog, docs, paths
from erlmcp_dr.catalog import StepOutline
from erlmcp_dr.errors import RunbookError, UnknownRunbook

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"


def test_discover_finds_only_playbooks_that_declare_a_runbook():
    found = catalog.discover(FIXTURES)
    assert sorted(found) == ["guarded", "leaky", "local_smoke"]
    assert "not_a_runbook" not in found


def test_metadata_comes_from_the_first_play():
    runbook = catalog.load("guarded", FIXTURES)
    assert runbook.title == "Guarded change"
    assert runbook.summary == "Needs confirmation and a target."
    assert (runbook.tier, runbook.rto_seconds, runbook.rpo_seconds, runbook.confirm) == (1, 300, 1, True)
    assert runbook.parameters["target"] == {"type": "str", "required": True, "description": "Where to point things."}
    assert runbook.required_parameters == ["target"]
    assert runbook.path == FIXTURES / "guarded.yml"
    assert runbook.targets == ["localhost", "postgres"]


def test_steps_follow_run_order_with_blocks_nested():
    steps = catalog.load("local_smoke", FIXTURES).steps
    assert steps[0] == StepOutline(0, "Validate the runbook's parameters", "task")
    block = steps.index(StepOutline(0, "Phase block", "block"))
    assert steps[block + 1] == StepOutline(1, "Inside the block", "task")
    assert steps[block + 2] == StepOutline(0, "if it fails: Phase block", "rescue")
    assert steps[block + 3] == StepOutline(1, "Rescue step", "task")
    assert steps[-1] == StepOutline(0, "Fail on request", "task")
    assert steps[block + 1].indented() == "  Inside the block"


def test_steps_span_all_plays_roles_before_tasks_and_unnamed_tasks_use_their_action():
    names = [step.name for step in catalog.load("guarded", FIXTURES).steps]
    assert names == [
        "Validate the runbook's parameters",
        "Point at the target",
        "role some_role",
        "ansible.builtin.debug",
    ]


def test_unknown_runbook_lists_known_names_and_suggests_the_closest():
    with pytest.raises(UnknownRunbook) as caught:
        catalog.load("guardd", FIXTURES)
    message = str(caught.value)
    assert "unknown runbook 'guardd'" in message
    assert "Did you mean 'guarded'?" in message
    assert "guarded, leaky, local_smoke" in message
    with pytest.raises(UnknownRunbook):
        catalog.load("not_a_runbook", FIXTURES)
    with pytest.raises(UnknownRunbook):
        catalog.load("../fixtures/playbooks/guarded", FIXTURES)


def test_name_with_yml_suffix_is_accepted():
    assert catalog.load("guarded.yml", FIXTURES).name == "guarded"


def test_environment_variable_moves_the_catalog(monkeypatch):
    monkeypatch.setenv(catalog.PLAYBOOKS_ENV, str(FIXTURES))
    assert catalog.playbooks_dir() == FIXTURES
    assert catalog.names() == ["guarded", "leaky", "local_smoke"]


def test_default_catalog_is_the_collections_playbooks(monkeypatch):
    monkeypatch.delenv(catalog.PLAYBOOKS_ENV, raising=False)
    assert catalog.playbooks_dir() == paths.collection_root() / "playbooks"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_broken_metadata_is_an_error_on_load_and_skipped_by_discover(tmp_path, caplog):
    _write(tmp_path / "bad.yml", "- hosts: localhost\n  vars:\n    runbook:\n      parameters: [a, b]\n")
    _write(tmp_path / "good.yml", "- hosts: localhost\n  vars:\n    runbook:\n      title: Good\n")
    with pytest.raises(RunbookError, match="runbook.parameters must be an argument spec mapping"):
        catalog.load("bad", tmp_path)
    assert list(catalog.discover(tmp_path)) == ["good"]
    assert "skipping" in caplog.text


def test_defaults_for_sparse_metadata(tmp_path):
    _write(tmp_path / "sparse.yml", "- name: Sparse play\n  hosts: all\n  vars:\n    runbook: {}\n  tasks: []\n")
    runbook = catalog.load("sparse", tmp_path)
    assert runbook.title == "Sparse play"
    assert runbook.confirm is True  # not saying means it may change things: ask
    assert (runbook.tier, runbook.rto_seconds, runbook.parameters, runbook.steps) == (None, None, {}, [])


def test_ansible_tags_in_playbooks_are_understood(tmp_path):
    _write(tmp_path / "tagged.yml",
           "- hosts: localhost\n  vars:\n    runbook:\n      title: !unsafe 'Tagged {{ x }}'\n  tasks: []\n")
    assert catalog.load("tagged", tmp_path).title == "Tagged {{ x }}"


# Not a real secret: a well-formed vault envelope whose payload no password opens.
_VAULTED = """- hosts: localhost
  vars:
    runbook:
      title: Vaulted
      parameters:
        token:
          type: str
          default: !vault |
            $ANSIBLE_VAULT;1.1;AES256
            6162636465666768696a6b6c6d6e6f70
        retries: {type: int, default: 3}
        ratio: {type: float, default: 0.5}
  tasks: []
"""


def test_vaulted_values_are_never_decrypted(tmp_path):
    _write(tmp_path / "vaulted.yml", _VAULTED)
    # No vault password is configured: any attempt to decrypt would raise.
    assert catalog.load("vaulted", tmp_path).parameters["token"]["default"] == "!vault"


def _types(value: object) -> set[type]:
    found = {type(value)}
    if isinstance(value, dict):
        for key, item in value.items():
            found |= _types(key) | _types(item)
    elif isinstance(value, list):
        for item in value:
            found |= _types(item)
    return found


def test_parsed_metadata_is_plain_python_without_ansible_tags(tmp_path):
    _write(tmp_path / "vaulted.yml", _VAULTED)
    runbook = catalog.load("vaulted", tmp_path)
    assert _types(runbook.parameters) <= {dict, str, int, float}
    assert type(runbook.title) is str
    assert type(runbook.parameters["retries"]["default"]) is int
    assert type(runbook.parameters["ratio"]["default"]) is float


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    _write(tmp_path / "broken.yml", "- hosts: localhost\n  vars:\n    runbook: {title: [\n")
    with pytest.raises(RunbookError, match=r"cannot read playbook .*broken\.yml, line \d+"):
        catalog.load("broken", tmp_path)


def test_the_collections_own_playbooks_are_all_runbooks_and_parse():
    directory = paths.collection_root() / "playbooks"
    files = sorted(directory.glob("*.yml"))
    assert files, f"no playbooks found in {directory}"
    for path in files:
        runbook = catalog.parse_playbook(path)  # raises RunbookError on broken metadata
        assert runbook is not None, f"{path.name}: its first play declares no vars.runbook"
        assert runbook.name == path.stem
        assert runbook.title and runbook.steps and runbook.targets, f"{path.name}: empty title, steps or targets"
    assert sorted(catalog.discover(directory)) == [path.stem for path in files]
    assert "database_failover" in catalog.names(directory)


# ---------------------------------------------------------------- docs


def test_page_shows_metadata_parameters_steps_and_how_to_run():
    page = docs.render_page(catalog.load("local_smoke", FIXTURES))
    assert page.startswith("<!-- Generated from playbooks/local_smoke.yml")
    assert "# Local smoke test" in page
    assert "| `repeat` | int | no | `1` | - | How many times to greet. |" in page
    assert "| `mode` | str | no | `safe` | `fast`, `safe` | A choice. |" in page
    assert "| `api_token` | str (secret) | no | - | - |" in page
    assert "| `hosts_to_check` | list of str |" in page
    assert "- Phase block\n  - Inside the block\n- if it fails: Phase block\n  - Rescue step" in page
    assert "runbook plan local_smoke" in page
    assert "ansible-playbook playbooks/local_smoke.yml -i inventories/prod" in page
    assert "| Confirmation | not required |" in page


def test_page_of_a_confirmed_runbook_shows_required_parameters_in_the_commands():
    page = docs.render_page(catalog.load("guarded", FIXTURES))
    assert "runbook run guarded -i inventories/prod -e target=<target>" in page
    assert "| Confirmation | required" in page
    assert "| Targets | `localhost`, `postgres` |" in page


def test_write_then_check_finds_no_drift(tmp_path):
    written = docs.write_pages(tmp_path, FIXTURES)
    assert sorted(path.name for path in written) == ["README.md", "guarded.md", "leaky.md", "local_smoke.md"]
    assert docs.check_pages(tmp_path, FIXTURES) == []
    assert docs.write_pages(tmp_path, FIXTURES) == []  # nothing to do the second time


def test_check_reports_drifted_missing_and_extra_pages(tmp_path):
    docs.write_pages(tmp_path, FIXTURES)
    (tmp_path / "guarded.md").write_text("edited by hand\n", encoding="utf-8")
    (tmp_path / "leaky.md").unlink()
    (tmp_path / "retired.md").write_text("<!-- Generated from playbooks/retired.yml -->\n", encoding="utf-8")
    problems = docs.check_pages(tmp_path, FIXTURES)
    assert problems == [
        f"drifted: {tmp_path / 'guarded.md'}",
        f"missing: {tmp_path / 'leaky.md'}",
        f"extra: {tmp_path / 'retired.md'}",
    ]
    docs.write_pages(tmp_path, FIXTURES)
    assert docs.check_pages(tmp_path, FIXTURES) == []
    assert not (tmp_path / "retired.md").exists()


# ---------------------------------------------------------------- the fast read and ansible-core's read agree

_TRICKY = """- name: Tricky
  hosts: localhost
  vars:
    base: &base {a: 1, b: yes, c: ~, d: 0o17, e: 1_000, f: .inf, g: 2026-11-25}
    merged: {<<: *base, h: on}
    unsafe_scalar: !unsafe '{{ lookup("pipe", "id") }}'
    unsafe_int: !unsafe 42
    unsafe_list: !unsafe ['{{ a }}', 2]
    unsafe_map: !unsafe {k: '{{ b }}'}
    token: !vault |
      $ANSIBLE_VAULT;1.1;AES256
      6162636465666768696a6b6c6d6e6f70
    text: |
      two
      lines
    runbook: {title: Tricky}
  tasks: []
"""


def _both_ways(path):
    text = path.read_text(encoding="utf-8")
    return catalog.read_plain_yaml(text), catalog._read_ansible_yaml(path, text)


def test_the_fast_read_equals_ansible_cores_read_of_every_shipped_and_fixture_playbook():
    folders = [paths.collection_root() / "playbooks", Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"]
    files = [path for folder in folders for path in sorted(folder.glob("*.yml"))]
    assert len(files) > 10
    for path in files:
        fast, ansible = _both_ways(path)
        assert fast == ansible, path


def test_the_fast_read_equals_ansible_cores_read_of_tags_anchors_and_yaml_1_1_scalars(tmp_path):
    _write(tmp_path / "tricky.yml", _TRICKY)
    fast, ansible = _both_ways(tmp_path / "tricky.yml")
    assert fast == ansible
    variables = fast[0]["vars"]
    assert variables["token"] == "!vault" and variables["unsafe_int"] == 42
    assert variables["merged"]["b"] is True and variables["merged"]["h"] is True


@pytest.mark.parametrize("text", [
    "- hosts: localhost\n  vars: {runbook: {title: One, title: Two}}\n  tasks: []\n",  # duplicate key
    "- hosts: localhost\n  vars: {runbook: {title: !custom x}}\n  tasks: []\n",  # a tag only Ansible may know
])
def test_what_the_fast_read_cannot_decide_is_read_by_ansible_core(tmp_path, text):
    _write(tmp_path / "odd.yml", text)
    with pytest.raises(yaml.YAMLError):
        catalog.read_plain_yaml(text)
    try:
        expected = catalog._read_ansible_yaml(tmp_path / "odd.yml", text)
    except RunbookError as exc:
        with pytest.raises(RunbookError, match=re.escape(str(exc))):
            catalog.load("odd", tmp_path)
    else:
        assert catalog._read_yaml(tmp_path / "odd.yml") == expected
