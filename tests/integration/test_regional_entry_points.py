"""regional_failover from plain ansible-playbook (what an AWX job template runs): erlmcp.dr.composed_run drives the
same composition engine as the runbook CLI, controller-side. Real lab: PostgreSQL streaming replication,
redis-server, Knot DNS, the lab's app; region a killed with kill -9."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import lab_inventory, new_lab
from regional_kill import B_SERVING, end_state
from runbook_helpers import CLI_HANG_GUARD, VENV_BIN, venv_path

from erlmcp_dr import paths
from erlmcp_dr.lab import regions as lab_regions

pytestmark = pytest.mark.integration

PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "regional_failover.yml"
MOVE = ("-e", "from_region=a", "-e", "to_region=b", "-e", "mode=unplanned", "-e", "health_interval=0.2")


def ansible_playbook(inventory: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=venv_path(), ANSIBLE_COLLECTIONS_PATH=str(paths.collections_path()),
               ANSIBLE_CONFIG=str(PLAYBOOK.parents[1] / "ansible.cfg"))
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOK), *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=CLI_HANG_GUARD,
                          check=False)


def test_plain_ansible_playbook_runs_the_unplanned_regional_failover_with_the_composition_engine(home: Path) -> None:
    with new_lab(app=True, dns=True) as cfg:
        inventory = lab_inventory(cfg)
        lab_regions.fail_region(cfg, "a")
        before = end_state(cfg)

        plan = ansible_playbook(inventory, *MOVE, "--check")
        assert plan.returncode == 0, plan.stdout[-3000:]
        assert end_state(cfg) == before and not list(home.glob("runs/*-regional_failover-*"))

        moved = ansible_playbook(inventory, *MOVE)
        assert moved.returncode == 0, moved.stdout[-5000:]
        assert end_state(cfg)["verified_state"] == B_SERVING
        (run_dir,) = [path for path in home.glob("runs/*-regional_failover-*") if "." not in path.name]  # not a step
        result = json.loads((run_dir / "result.json").read_text())
        details = result["facts"]["summary"]["details"]
        assert result["status"] == "successful" and details["status"] == "completed"
        assert [step["step"] for step in details["steps"]] == [
            "residency", "confirm", "declare", "isolate", "services", "redis", "database", "app", "dns", "resolved"]
        assert all(step["run_id"] for step in details["steps"] if step["step"] not in ("residency", "isolate", "app"))
        assert json.loads((run_dir / "journal.json").read_text())["status"] == "completed"
        assert not list((cfg.root / "locks").glob("*.lock.json"))  # the lock over the move given back
