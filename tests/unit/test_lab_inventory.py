"""The shipped lab inventory is the one the lab would write for its default place."""

from __future__ import annotations

from pathlib import Path

import yaml

from erlmcp_dr import lab, paths


def test_shipped_lab_inventory_matches_the_lab():
    shipped = yaml.safe_load((paths.collection_root() / "inventories" / "lab" / "hosts.yml").read_text())
    cfg = lab.LabConfig(root=Path("/unused"))
    assert shipped == lab.inventory(cfg, lab_dir_expr="{{ inventory_dir }}/../../.lab")


def test_written_inventory_points_at_the_lab(tmp_path):
    cfg = lab.LabConfig(root=tmp_path / "lab", port_base=40000)
    written = yaml.safe_load(lab.write_inventory(cfg, tmp_path / "hosts.yml").read_text())
    hosts = written["all"]["children"]["postgres"]["hosts"]
    assert [hosts[name]["pg_port"] for name in ("pg-a", "pg-b", "pg-c")] == [40000, 40001, 40002]
    assert hosts["pg-b"]["pg_data_dir"] == f"{cfg.root}/pg/pg-b/data"
