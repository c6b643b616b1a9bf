"""The audit trail's inventory host names: read from a YAML inventory without ansible-core, the same names as
Ansible's InventoryManager; anything else is left to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from erlmcp_dr import paths, runner
from erlmcp_dr.lab import lifecycle as lab

ROOT = paths.collection_root()


def _ansible_names(inventory: Path) -> set:
    names = runner._limited_hosts(inventory, "all", "all")
    assert names is not None, f"ansible-core could not read {inventory}"
    return set(names)


@pytest.mark.parametrize("inventory", ["inventories/lab", "inventories/lab/hosts.yml", "inventories/example",
                                       "inventories/example-route53"])
def test_shipped_inventories_give_the_same_names_as_ansible_core(inventory):
    path = ROOT / inventory
    assert runner.yaml_inventory_hosts(path) == _ansible_names(path)


def test_a_generated_lab_inventory_gives_the_same_names_as_ansible_core(tmp_path):
    cfg = lab.LabConfig(root=tmp_path / "lab", port_base=40000)
    path = lab.write_inventory(cfg, tmp_path / "inventory" / "hosts.yml")
    names = runner.yaml_inventory_hosts(path)
    assert names and names == _ansible_names(path)


def test_nested_children_null_groups_and_vault_values(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text(
        "all:\n  children:\n    empty:\n    db:\n      children:\n        east:\n          hosts:\n"
        "            db-1: {secret: !vault \"$ANSIBLE_VAULT;1.1;AES256\\n6162\"}\n            db-2:\n"
        "    web:\n      hosts: {web-1: ~}\nungrouped:\n  hosts: {lone: {}}\n", encoding="utf-8")
    assert runner.yaml_inventory_hosts(path) == {"db-1", "db-2", "web-1", "lone"}


@pytest.mark.parametrize("name,text", [
    ("hosts.ini", "[db]\ndb-1\n"),  # INI
    ("hosts.yml", "all:\n  hosts:\n    web[1:3]:\n"),  # a host range
    ("hosts.yml", "all:\n  hosts:\n    web-1:2222:\n"),  # a host with its port
    ("aws_ec2.yml", "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n"),  # an inventory plugin's configuration
    ("hosts.yml", "all:\n  hosts: [a, b]\n"),  # not the YAML inventory shape
    ("hosts.yml", "all: {hosts: {a: 1}\n"),  # does not parse
])
def test_what_only_ansible_reads_right_is_left_to_it(tmp_path, name, text):
    (tmp_path / name).write_text(text, encoding="utf-8")
    assert runner.yaml_inventory_hosts(tmp_path / name) is None
    assert runner.yaml_inventory_hosts(tmp_path) is None  # the folder holding it, too


def test_a_folder_of_yaml_files_with_vars_folders_is_read_whole(tmp_path):
    (tmp_path / "a.yml").write_text("db:\n  hosts: {db-1: {}}\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("web:\n  hosts: {web-1: {}}\n", encoding="utf-8")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("x: 1\n", encoding="utf-8")
    assert runner.yaml_inventory_hosts(tmp_path) == {"db-1", "web-1"} == _ansible_names(tmp_path)
    assert runner.yaml_inventory_hosts(tmp_path / "missing") is None


def test_the_names_are_read_again_when_a_file_changes_and_a_caller_cannot_change_them(tmp_path):
    """A composed run's children ask for the same inventory's names: read once while its files are unchanged."""
    path = tmp_path / "hosts.yml"
    path.write_text("db:\n  hosts: {db-1: {}}\n", encoding="utf-8")
    first = runner.yaml_inventory_hosts(path)
    assert first == {"db-1"}
    first.add("mutated by a caller")
    assert runner.yaml_inventory_hosts(path) == {"db-1"}
    path.write_text("db:\n  hosts: {db-2: {}}\n", encoding="utf-8")  # the same size: another host
    assert runner.yaml_inventory_hosts(path) == {"db-2"}
    (tmp_path / "web.yml").write_text("web:\n  hosts: {web-1: {}}\n", encoding="utf-8")  # a file added to the folder
    assert runner.yaml_inventory_hosts(tmp_path) == {"db-2", "web-1"}
    path.write_text("db:\n  hosts: [a, b]\n", encoding="utf-8")  # no longer read here: left to ansible-core
    assert runner.yaml_inventory_hosts(tmp_path) is None
