"""A composed run's inventory parse handed to its children's warm ansible-playbook (warm/parsed_inventory.py): a
child gets exactly what its own parse would give (values and origins) while each file is unchanged, and parses
anything else itself; vault-encrypted files are never written down; a file others may read is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.inventory.manager import InventoryManager
from ansible.module_utils._internal._datatag import AnsibleTagHelper
from ansible.parsing.dataloader import DataLoader
from ansible.vars.manager import VariableManager

from erlmcp_dr import runner
from erlmcp_dr.compose import inventory as inventory_module
from erlmcp_dr.compose.run import inventory_handed_over
from erlmcp_dr.warm import parsed_inventory

HOSTS = ("all:\n  children:\n    postgres:\n      hosts:\n"
         "        db-1: {pg_port: 5433, note: '{{ inventory_hostname }}'}\n")
GROUP_VARS = "pg_login_password: lab-secret\nlisted: [a, b]\n"


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    folder = tmp_path / "inventory"
    (folder / "group_vars").mkdir(parents=True)
    (folder / "hosts.yml").write_text(HOSTS, encoding="utf-8")
    (folder / "group_vars" / "postgres.yml").write_text(GROUP_VARS, encoding="utf-8")
    return folder


@pytest.fixture
def parses(monkeypatch):
    """DataLoader.load_from_file counted (the files ansible-core parsed itself), restored after the test."""
    counted: list[str] = []
    original = DataLoader.load_from_file

    def counting(self, file_name, *args, **kwargs):
        counted.append(os.path.basename(str(file_name)))
        return original(self, file_name, *args, **kwargs)

    monkeypatch.setattr(DataLoader, "load_from_file", counting)
    return counted


def _host_vars(folder: Path) -> dict:
    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(folder)])
    return VariableManager(loader=loader, inventory=manager).get_vars(host=manager.get_host("db-1"),
                                                                      include_hostvars=False)


def _handed(folder: Path, tmp_path: Path) -> str:
    view = inventory_module.read(folder)
    assert {Path(key[0]).name for key in view.parsed} == {"hosts.yml", "postgres.yml"}
    handoff = tmp_path / "handoff"
    handoff.mkdir(mode=0o700)
    path = parsed_inventory.write(view.parsed, str(handoff))
    assert path is not None and os.stat(path).st_mode & 0o777 == 0o600
    return path


def test_a_child_gets_what_its_own_parse_gives_without_parsing_the_unchanged_files(inventory, tmp_path, parses):
    fresh = _host_vars(inventory)
    path = _handed(inventory, tmp_path)
    assert parsed_inventory.install({parsed_inventory.ENV: path})
    parses.clear()
    handed = _host_vars(inventory)
    assert parses == []  # neither the inventory nor its group_vars parsed again
    for name in ("pg_port", "note", "pg_login_password", "listed"):
        assert handed[name] == fresh[name]
        assert AnsibleTagHelper.tags(handed[name]) == AnsibleTagHelper.tags(fresh[name])  # origin, trust
    handed["listed"].append("changed by one reader")
    assert _host_vars(inventory)["listed"] == ["a", "b"]  # each call its own copy


def test_a_file_written_since_the_handoff_is_parsed_again(inventory, tmp_path, parses):
    path = _handed(inventory, tmp_path)
    assert parsed_inventory.install({parsed_inventory.ENV: path})
    changed = GROUP_VARS.replace("lab-secret", "new-secret")
    (inventory / "group_vars" / "postgres.yml").write_text(changed, encoding="utf-8")
    parses.clear()
    assert _host_vars(inventory)["pg_login_password"] == "new-secret"
    assert parses == ["postgres.yml"]  # the inventory itself still handed over


def test_a_vault_encrypted_value_is_never_written_down(inventory, tmp_path):
    (inventory / "group_vars" / "postgres.yml").write_text(
        'other_secret: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n', encoding="utf-8")
    view = inventory_module.read(inventory)
    assert {Path(key[0]).name for key in view.parsed} == {"hosts.yml"}


def test_a_handoff_others_may_read_is_refused_and_nothing_is_changed(inventory, tmp_path):
    path = _handed(inventory, tmp_path)
    os.chmod(path, 0o644)
    loader_method = DataLoader.load_from_file
    assert not parsed_inventory.install({parsed_inventory.ENV: path})
    assert not parsed_inventory.install({parsed_inventory.ENV: str(tmp_path / "missing")})
    assert not parsed_inventory.install({})
    assert DataLoader.load_from_file is loader_method


def test_the_composed_run_hands_it_over_in_a_private_folder_removed_at_its_end(inventory, tmp_path, monkeypatch):
    monkeypatch.setenv("ERLMCP_DR_HOME", str(tmp_path / "home"))
    view = inventory_module.read(inventory)
    with inventory_handed_over(view, "20261207T000000Z-regional_failover-0001") as path:
        assert path is not None
        folder = Path(path).parent
        assert folder.stat().st_mode & 0o777 == 0o700 and Path(path).stat().st_mode & 0o777 == 0o600
        assert parsed_inventory.read(path) == view.parsed
    assert not folder.exists()
    view.parsed.clear()
    with inventory_handed_over(view, "20261207T000000Z-regional_failover-0002") as path:
        assert path is None


def test_a_handoff_that_cannot_be_written_leaves_each_step_to_parse_the_inventory(inventory, tmp_path, monkeypatch):
    """A full disk (or any OSError making the folder or the file) is not the move's failure."""
    monkeypatch.setenv("ERLMCP_DR_HOME", str(tmp_path / "home"))
    view = inventory_module.read(inventory)

    def full(run_id):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner, "make_private_data_dir", full)
    with inventory_handed_over(view, "20261207T000000Z-regional_failover-0003") as path:
        assert path is None


def test_a_killed_composed_runs_handoff_is_removed_by_the_next_runs_sweep(inventory, tmp_path, monkeypatch):
    """The run died before its end removed the folder: its owner marker names a process that is gone."""
    monkeypatch.setenv("ERLMCP_DR_HOME", str(tmp_path / "home"))
    folder = runner.make_private_data_dir("20261207T000000Z-regional_failover-0004.inventory")
    parsed_inventory.write(inventory_module.read(inventory).parsed, str(folder))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    (folder / runner.OWNER_FILE).write_text(json.dumps({"pid": int(gone.stdout), "pid_start_time": 1}))
    assert folder in runner.remove_stale_private_dirs()
    assert not folder.exists()


def test_a_handoff_others_may_write_is_refused(inventory, tmp_path):
    path = _handed(inventory, tmp_path)
    for mode in (0o620, 0o602):
        os.chmod(path, mode)
        assert parsed_inventory.read(path) is None
