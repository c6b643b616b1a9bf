"""Lab ports outside the kernel's ephemeral range, a busy port named with its holder, and a default inventory
that follows the lab that is there (or refuses when the two differ)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml

from erlmcp_dr import paths
from erlmcp_dr.errors import ParameterError
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import ports as lab_ports

REPO = Path(__file__).resolve().parents[2]


def test_the_default_lab_and_the_test_labs_listen_below_the_ephemeral_range():
    start, _ = lab_ports.ephemeral_range()  # this machine's /proc/sys/net/ipv4/ip_local_port_range
    assert lab.DEFAULT_PORT_BASE + lab.PORTS_PER_LAB <= start
    assert not lab_ports.in_ephemeral_range(lab.DEFAULT_PORT_BASE, lab.PORTS_PER_LAB)
    base = lab.free_port_base()
    assert base + lab.PORTS_PER_LAB <= start
    assert lab_ports.TEST_PORTS[0] >= lab.DEFAULT_PORT_BASE + lab.PORTS_PER_LAB  # tests never take the default's


def test_the_shipped_inventory_names_ports_below_the_ephemeral_range():
    start, _ = lab_ports.ephemeral_range()
    text = (REPO / "inventories" / "lab" / "hosts.yml").read_text()
    children = yaml.safe_load(text)["all"]["children"]
    ports = [host[key] for group in children.values() for host in group["hosts"].values()
             for key in ("pg_port", "redis_port", "dns_port") if key in host]
    assert ports and max(ports) < start, ports


def test_ranges_are_cut_below_another_kernels_ephemeral_start():
    assert lab_ports.below_ephemeral(16000, 32000, 9, ephemeral=(20000, 60999)) == (16000, 20000)
    assert lab_ports.below_ephemeral(16000, 32000, 9, ephemeral=(32768, 60999)) == (16000, 32000)
    assert lab_ports.in_ephemeral_range(54321, 9, ephemeral=(32768, 60999))  # the old default base
    assert lab_ports.ephemeral_range(Path("/nonexistent")) == lab_ports.LINUX_EPHEMERAL_DEFAULT


def test_a_busy_port_is_named_with_the_process_that_listens_on_it():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not lab_ports.port_free(port)
        message = lab_ports.describe_busy_port(port, "pg-b")
    assert message.startswith(f"port {port} (pg-b) is in use: 127.0.0.1:{port} listening, held by pid {os.getpid()}")
    assert lab.PORT_BASE_ENV in message


def test_a_connection_in_time_wait_is_named_as_such():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        source_port = client.getsockname()[1]
        client.close()  # the side that closes first keeps the TIME-WAIT: the client's source port
        accepted.close()
    holders = lab_ports.port_holders(source_port)
    assert any(h.startswith(f"connection 127.0.0.1:{source_port} ->") and "TIME-WAIT" in h for h in holders), holders


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    monkeypatch.delenv(lab.PORT_BASE_ENV, raising=False)
    root = tmp_path / "checkout"
    (root / "inventories" / "lab").mkdir(parents=True)
    return root


def record_lab(lab_dir: Path, base: int, *, inventory: bool) -> Path:
    lab_dir.mkdir(parents=True, exist_ok=True)
    (lab_dir / "lab.json").write_text(f'{{"port_base": {base}, "nodes": ["pg-a", "pg-b", "pg-c"]}}\n')
    written = paths.lab_inventory(lab_dir)
    if inventory:
        lab.write_inventory(lab.LabConfig(root=lab_dir, port_base=base), written)
    return written


def test_the_shipped_inventory_serves_the_default_lab(checkout):
    shipped = checkout / "inventories" / "lab"
    written = paths.lab_inventory(checkout / ".lab")
    assert lab_ports.checkout_inventory(checkout, checkout / ".lab", written) == shipped  # no lab yet
    record_lab(checkout / ".lab", lab.DEFAULT_PORT_BASE, inventory=True)
    assert lab_ports.checkout_inventory(checkout, checkout / ".lab", written) == shipped


def test_a_lab_on_another_base_is_run_against_its_own_inventory(checkout):
    written = record_lab(checkout / ".lab", 36000, inventory=True)
    chosen = lab_ports.checkout_inventory(checkout, checkout / ".lab", written)
    assert chosen == written
    hosts = yaml.safe_load(chosen.read_text())["all"]["children"]["postgres"]["hosts"]
    assert hosts["pg-a"]["pg_port"] == 36000 and hosts["pg-a"]["pg_data_dir"].startswith(str(checkout / ".lab"))


def test_a_lab_in_another_folder_is_run_against_its_own_inventory(checkout, tmp_path):
    written = record_lab(tmp_path / "elsewhere", lab.DEFAULT_PORT_BASE, inventory=True)
    assert lab_ports.checkout_inventory(checkout, tmp_path / "elsewhere", written) == written


def test_a_lab_on_another_base_without_its_inventory_is_refused(checkout):
    written = record_lab(checkout / ".lab", 36000, inventory=False)
    with pytest.raises(ParameterError, match="port base 36000.*run `runbook lab up`"):
        lab_ports.checkout_inventory(checkout, checkout / ".lab", written)


def test_a_port_base_that_is_not_the_labs_is_refused_naming_both(checkout, monkeypatch):
    written = record_lab(checkout / ".lab", lab.DEFAULT_PORT_BASE, inventory=True)
    monkeypatch.setenv(lab.PORT_BASE_ENV, "36000")
    with pytest.raises(ParameterError, match=f"ERLMCP_DR_LAB_PORT_BASE=36000, but the lab in .* was built on port "
                                             f"base {lab.DEFAULT_PORT_BASE}"):
        lab_ports.checkout_inventory(checkout, checkout / ".lab", written)


def test_the_lab_keeps_the_base_it_was_built_on(tmp_path, monkeypatch):
    monkeypatch.delenv(lab.PORT_BASE_ENV, raising=False)
    monkeypatch.setenv(paths.LAB_DIR_ENV, str(tmp_path / "lab"))
    assert lab.LabConfig.from_env().port_base == lab.DEFAULT_PORT_BASE
    record_lab(tmp_path / "lab", 54321, inventory=False)  # built before the default moved
    assert lab.LabConfig.from_env().port_base == 54321
    monkeypatch.setenv(lab.PORT_BASE_ENV, "36000")
    assert lab.LabConfig.from_env().port_base == 36000
