"""`runbook bia` on the shipped lab inventory (its dr_services example, lab/bia.py) and on bad inventories; the
erlmcp.dr.* BIA filters as a playbook calls them (through Ansible's filter loader, FQCN)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from erlmcp_dr import bia, cli, paths

LAB_INVENTORY = paths.collection_root() / "inventories" / "lab" / "hosts.yml"


def test_the_lab_inventory_table(capsys):
    assert cli.main(["bia", "-i", str(LAB_INVENTORY), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    rows = {row["service"]: row for row in table["services"]}
    assert [row["service"] for row in table["services"]] == ["sessions", "api", "analytics"]  # by score
    assert (rows["sessions"]["score_points"], rows["sessions"]["level"], rows["sessions"]["strategy"]) == \
        (320.0, "critical", "hot")
    assert (rows["api"]["level"], rows["api"]["rto_minutes"], rows["api"]["strategy"]) == ("important", 5.0, "hot")
    assert (rows["analytics"]["level"], rows["analytics"]["strategy"], rows["analytics"]["objectives_from"]) == \
        ("standard", "warm", "service")
    assert table["tiers"][0] == {"tier": 1, "rto_seconds": 300, "rpo_seconds": 1, "availability_percent": 99.999,
                                 "source": "built-in"}
    assert cli.main(["bia", "-i", str(LAB_INVENTORY)]) == 0
    printed = capsys.readouterr().out
    assert "sessions" in printed and "250,000 EUR" in printed and "5 min" in printed


def test_a_string_score_in_the_inventory_is_refused_naming_it(tmp_path, capsys):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  vars:\n    dr_services:\n      payments:\n        scores: {revenue: high, "
                         "customer: 10, compliance: 10, operational: 10}\n")
    assert cli.main(["bia", "-i", str(inventory)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "dr_services.payments.scores.revenue: found 'high'" in err and str(inventory) in err


def test_an_inventory_without_services_says_what_to_add(tmp_path, capsys):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts: {localhost: {}}\n")
    assert cli.main(["bia", "-i", str(inventory)]) == cli.EXIT_USAGE
    assert "dr_services: not set in the inventory" in capsys.readouterr().err


def test_an_inventory_override_of_a_tier_reaches_the_table(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  vars:\n    dr_tier_objectives: {1: {rto_seconds: 7200}}\n    dr_services:\n"
                         "      svc: {scores: {revenue: 100, customer: 100, compliance: 100, operational: 0}}\n")
    table = bia.table_for(bia.inventory_vars(inventory))
    assert table["services"][0]["rto_minutes"] == 120.0 and table["services"][0]["strategy"] == "warm"
    assert table["tiers"][0]["source"] == "inventory"


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.debug:
        msg: "{{ [{'revenue': 100, 'customer': 100, 'compliance': 100, 'operational': 0} | erlmcp.dr.criticality,
                  'critical' | erlmcp.dr.recovery_strategy(241, 5), (1 | erlmcp.dr.tier_objectives).rto_seconds,
                  2 | erlmcp.dr.degradation_level(0.01, 9000)] }}"
    - block:
        - ansible.builtin.debug:
            msg: "{{ 'critical' | erlmcp.dr.recovery_strategy('24*60', 5) }}"
      rescue:
        - ansible.builtin.debug:
            msg: "refused: {{ ansible_failed_result.msg }}"
"""


def test_the_filters_through_ansible_by_their_fqcn_and_a_string_refused_naming_the_field(tmp_path):
    """One ansible-playbook run (a process costs seconds on a loaded machine): the three filters as a playbook
    author calls them, then a string where minutes are meant, which fails its task naming the field."""
    playbook = tmp_path / "bia.yml"
    playbook.write_text(PLAYBOOK)
    out = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), str(playbook)], capture_output=True,
                         text=True, check=False, cwd=paths.collection_root())
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"msg:\s*- critical\s*- warm\s*- 300\s*- reduced\b", out.stdout), out.stdout
    refused = " ".join(out.stdout.split()).split("refused: ", 1)[1]
    assert "erlmcp.dr.recovery_strategy: service.rto_minutes: found ''24*60'' (str)" in refused, refused
