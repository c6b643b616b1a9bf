"""inventories/example shows a regional move that can run (issue 17): read through the composing code's own
inventory reader (compose/inventory.py), every region has what the isolation of the region left needs (an
application URL, its stop and start commands as argument lists) and what the services step's service_recovery
needs (services with a start command and a health URL, a dependency graph with an order). No lab, no network."""

from __future__ import annotations

import itertools
import shutil

import pytest

from erlmcp_dr import paths
from erlmcp_dr.compose import inventory, isolate

EXAMPLE = paths.collection_root() / "inventories" / "example"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> inventory.InventoryView:
    """The example as an operator uses it: its vault's example copied to vault.yml (its secrets are templates)."""
    copy = tmp_path_factory.mktemp("inventory") / "example"
    shutil.copytree(EXAMPLE, copy)
    vault = copy / "group_vars" / "all"
    shutil.copy(vault / "vault.yml.example", vault / "vault.yml")
    return inventory.read(copy)


def test_every_pair_of_example_regions_passes_the_regional_moves_checks(example: inventory.InventoryView) -> None:
    regions = example.regions()
    assert regions == ["eu-central-1", "eu-west-1", "us-east-1"]
    for from_region, to_region in itertools.permutations(regions, 2):
        targets = example.check_regions(from_region, to_region)  # raises when a region lacks a node or services
        assert targets["from"]["app_url"] and targets["to"]["app_url"]


def test_every_example_application_has_the_commands_the_isolation_runs(example: inventory.InventoryView) -> None:
    apps = example.hosts["app"]
    assert len(apps) == 3
    for name, app in apps.items():
        # isolate._command is what the step runs: a non-empty list of non-empty strings (no shell), else refused.
        stop, start = isolate._command(app.get("app_stop_command")), isolate._command(app.get("app_start_command"))
        assert stop is not None and start is not None, f"{name}: {app}"
        assert isolate.app_action(isolate.ANSWERS, True) == "stop"  # so an answering app is stopped, not refused
        assert "{{" not in " ".join(stop + start)


def test_every_example_region_has_services_service_recovery_can_order() -> None:
    """What the services step's child (service_recovery) reads, through ansible-core's hostvars as the playbook does,
    goes through its own checks: the contract's fields, a dependency graph without cycle or unknown name."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._services import order

    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(EXAMPLE)])
    variables = VariableManager(loader=loader, inventory=manager)
    hostvars = {host.name: variables.get_vars(host=host, include_hostvars=False) for host in manager.get_hosts()}
    groups = {name: [host.name for host in group.get_hosts()] for name, group in manager.groups.items()}
    for region in ("eu-west-1", "eu-central-1", "us-east-1"):
        inputs = order.region_inputs(groups["services"], groups["postgres"], groups["redis"], hostvars, region)
        services = order.check_services(inputs["services"])
        assert order.levels(services) == [["auth", "session_manager"], ["api_gateway"]]
        assert {entry["kind"] for entry in inputs["backing"]} == {"postgres", "redis"}  # level 0: one of each
