"""The shipped lab inventory is the one the lab would write for its default place."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from erlmcp_dr import paths
from erlmcp_dr.lab import lifecycle as lab

SHIPPED_LAB_DIR = "{{ playbook_dir }}/../.lab"


def test_shipped_lab_inventory_matches_the_lab():
    shipped = yaml.safe_load((paths.collection_root() / "inventories" / "lab" / "hosts.yml").read_text())
    cfg = lab.LabConfig(root=Path("/unused"))
    assert shipped == lab.inventory(cfg, lab_dir_expr=SHIPPED_LAB_DIR)


def test_written_inventory_points_at_the_lab(tmp_path):
    cfg = lab.LabConfig(root=tmp_path / "lab", port_base=40000)
    written = yaml.safe_load(lab.write_inventory(cfg, tmp_path / "hosts.yml").read_text())
    hosts = written["all"]["children"]["postgres"]["hosts"]
    assert [hosts[name]["pg_port"] for name in ("pg-a", "pg-b", "pg-c")] == [40000, 40001, 40002]
    assert hosts["pg-b"]["pg_data_dir"] == f"{cfg.root}/pg/pg-b/data"


def test_shipped_lab_inventory_resolves_for_the_controller_and_the_nodes(tmp_path):
    """Run real Ansible: every path must resolve on localhost (the first play) and on the nodes.

    The inventory resolves against playbook_dir: an ad-hoc task run with --playbook-dir playbooks/ sees what a
    runbook there sees, and writes nothing into playbooks/ (a test must not: the catalog, another xdist worker and a
    read-only checkout all read it).
    """
    root = paths.collection_root()
    content = "{{ {'app': dr_app_config_path, 'data': hostvars['pg-b'].pg_data_dir} | to_json }}"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-i", str(root / "inventories" / "lab"),
         "--playbook-dir", str(root / "playbooks"), "-m", "ansible.builtin.copy",
         "-a", json.dumps({"dest": str(tmp_path / "out.json"), "content": content})],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list((root / "playbooks").glob(".inventory_probe*")), "a probe was left in playbooks/"
    resolved = json.loads((tmp_path / "out.json").read_text())
    assert Path(resolved["app"]).resolve() == root / ".lab" / "app" / "database.json"
    assert Path(resolved["data"]).resolve() == root / ".lab" / "pg" / "pg-b" / "data"


def test_only_labs_made_for_tests_get_their_own_lock_dir(tmp_path):
    """Copies of one lab template share a system identifier (the run lock's key): each gets its own lock
    dir. The shipped inventory must not set one, so the CLI and plain ansible-playbook share the default."""
    shipped = yaml.safe_load((paths.collection_root() / "inventories" / "lab" / "hosts.yml").read_text())
    assert "dr_lock_dir" not in shipped["all"]["vars"]
    cfg = lab.LabConfig(root=tmp_path / "lab")
    assert "dr_lock_dir" not in lab.inventory(cfg)["all"]["vars"]
    written = yaml.safe_load(lab.write_inventory(cfg, tmp_path / "hosts.yml", own_lock_dir=True).read_text())
    assert written["all"]["vars"]["dr_lock_dir"] == f"{cfg.root}/locks"


def test_the_app_group_names_one_instance_per_region_on_its_loopback_address(tmp_path):
    cfg = lab.LabConfig(root=tmp_path / "lab", port_base=40000)
    group = lab.inventory(cfg)["all"]["children"]["app"]
    port = 40000 + lab.APP_PORT_OFFSET
    # ... and the commands that stop and start it (the regional failover's isolation: lab/app_control.py)
    identity = {region: ["--dir", f"{cfg.root}/app", "--name", f"app-{region}", "--region", region, "--host",
                         f"127.0.1.{i}", "--port", str(port)] for i, region in enumerate("abc", start=1)}
    assert group["hosts"] == {
        f"app-{region}": {"app_host": f"127.0.1.{i}", "app_port": port, "app_url": f"http://127.0.1.{i}:{port}",
                          "dr_region": region,
                          "app_stop_command": ["{{ ansible_playbook_python }}", "-m", "erlmcp_dr.lab.app_control",
                                               "stop", *identity[region]],
                          "app_start_command": ["{{ ansible_playbook_python }}", "-m", "erlmcp_dr.lab.app_control",
                                                "start", *identity[region]]}
        for i, region in enumerate("abc", start=1)
    }
    assert group["vars"]["ansible_connection"] == "local"
