"""erlmcp.dr.inventory_contract through real ansible-playbook runs on the fixture inventories and the lab's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "inventories"
PLAYBOOK = FIXTURES / "check_contract.yml"
DESIGN = "What the inventory must hold: see docs/design.md, section 'Inventory contract'."


def check(inventory: Path, *extra: str) -> tuple[int, str]:
    """Run the contract playbook on an inventory; (exit code, output with YAML line folding undone)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
                           str(PLAYBOOK), *extra], capture_output=True, text=True, env=env, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def problems_of(output: str) -> list[str]:
    """The problem lines of the failure message (the `msg: |-` block)."""
    block = output.split("msg: |-", 1)[1].split("ok: false", 1)[0]
    return [line.strip()[2:] for line in block.splitlines() if line.strip().startswith("- ")]


def test_good_inventory_passes():
    code, out = check(FIXTURES / "good.yml", "-v")
    assert code == 0, out
    assert "- db-1" in out and "- db-2" in out


def test_lab_inventory_with_playbook_dir_templates_passes():
    code, out = check(ROOT / "inventories" / "lab", "-v")
    assert code == 0, out
    assert "- pg-a" in out and "- pg-c" in out


def test_missing_group_names_the_group_the_groups_found_and_the_file():
    source = FIXTURES / "missing_group.yml"
    code, out = check(source)
    assert code == 2
    assert problems_of(out) == [
        "group 'postgres' is not in the inventory, expected at least 1 host(s) in it (groups found: databases)"]
    assert f"Inventory source(s): {source}." in out and DESIGN in out
    assert "has no attribute" not in out


def test_empty_group():
    code, out = check(FIXTURES / "empty_group.yml")
    assert code == 2
    assert problems_of(out) == ["group 'postgres' has 0 host(s), expected at least 1"]


def test_missing_login_user_and_missing_host_var_are_both_listed():
    code, out = check(FIXTURES / "missing_login_user.yml")
    assert code == 2
    assert problems_of(out) == [
        "host db-2 (group postgres): pg_data_dir is not defined, expected type path",
        "controller (localhost): pg_login_user is not defined, expected type str",
    ]
    assert "is undefined" not in out


def test_wrong_types_name_value_type_and_expected_type_never_a_secret():
    code, out = check(FIXTURES / "bad_port.yml")
    assert code == 2
    assert problems_of(out) == [
        "host db-1 (group postgres): pg_port is 'abc' (str), expected type int",
        "controller (localhost): pg_replication_password is a mapping (value hidden), expected type str",
    ]
    assert "secret-value-1234" not in out
    assert "could not be converted to dict" not in out


def test_unparsable_inventory_names_the_file_and_the_line():
    source = FIXTURES / "unparsable.yml"
    code, out = check(source)
    assert code == 2
    problems = problems_of(out)
    assert problems[0].startswith(f"inventory source {source} could not be parsed (at {source}:8:7): YAML parsing")
    assert "group 'postgres' is not in the inventory, expected at least 1 host(s) in it (groups found: none)" \
        in problems


def test_empty_inventory_says_it_is_empty():
    source = FIXTURES / "empty.yml"
    code, out = check(source)
    assert code == 2
    problems = problems_of(out)
    assert problems[:2] == [f"inventory source {source} is empty",
                            "group 'postgres' is not in the inventory, expected at least 1 host(s) in it "
                            "(groups found: none)"]
    assert "controller (localhost): pg_login_user is not defined, expected type str" in problems


def test_unsafe_values_are_never_rendered(tmp_path):
    """A value marked unsafe that looks like a template is checked as the text it is, not run."""
    marker = tmp_path / "ran"
    inventory = tmp_path / "hosts.yml"
    inventory.write_text((FIXTURES / "good.yml").read_text().replace(
        "pg_login_user: erlmcp_dr", f"pg_login_user: !unsafe '{{{{ lookup(\"pipe\", \"touch {marker}\") }}}}'"))
    code, out = check(inventory)
    assert code == 0, out
    assert not marker.exists()


def test_trusted_templates_from_the_inventory_are_rendered_for_their_type(tmp_path):
    inventory = tmp_path / "hosts.yml"
    text = (FIXTURES / "good.yml").read_text()
    text = text.replace("pg_port: 5432", "pg_port: '{{ 5000 + 432 }}'")
    text = text.replace('pg_port: "5432"', "pg_port: '{{ \"x\" ~ playbook_dir }}'")
    inventory.write_text(text.replace("pg_data_dir: /var/lib/postgresql/15/main\n          dr_region",
                                      "pg_data_dir: '{{ no_such_var }}/data'\n          dr_region"))
    code, out = check(inventory)
    assert code == 2
    problems = problems_of(out)
    assert problems[0] == "host db-1 (group postgres): pg_data_dir could not be templated: 'no_such_var' is undefined"
    assert problems[1].startswith("host db-2 (group postgres): pg_port is 'x/")  # playbook_dir was rendered
    assert problems[1].endswith("(str), expected type int")
    assert len(problems) == 2
