"""regional_failover with two operators and with hostile or wrong input, on one real lab (PostgreSQL streaming
replication, redis-server, Knot DNS, the lab's app): a move that holds the lock turns every other runbook on its
targets away (exit 3, naming it); bad input gets a clear error (exit 2, the parameter named) and changes nothing,
judged by a fingerprint of the lab taken from outside."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import lab_inventory, new_lab
from regional_kill import MOVE, kill_run_tree, process_state, redis_primaries, writable_nodes
from runbook_helpers import (
    CLI_HANG_GUARD,
    dns_answers,
    inventory_copy,
    runbook_cli,
    runbook_command,
    venv_path,
    wait_for,
)

from erlmcp_dr.compose import run as composed
from erlmcp_dr.lab import app as lab_app
from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

# Each single-system runbook on the move's targets, with arguments that would act on them were the lock free.
SINGLE_SYSTEM = (
    ("database_failover", ("-e", "candidate=pg-c")),
    ("database_switchover", ("-e", "candidate=pg-c")),
    ("database_rejoin", ("-e", "node=pg-c")),
    ("redis_failover", ("-e", "candidate=redis-c")),
    ("redis_restore", ()),
    ("dns_cutover", ("-e", "region=c")),
    ("service_recovery", ("-e", "region=b")),  # the services step's key is in the move's lock too
)
HOSTILE = (  # (extra vars, the parameter the error must name, a phrase of the expected value)
    (("from_region=a", "to_region={{ lookup('pipe', 'touch /tmp/erlmcp-dr-pwned') }}", "mode=unplanned"),
     "to_region", "{{"),
    (("from_region=a", "to_region=z", "mode=unplanned"), "to_region", "dr_region of its hosts: a, b, c"),
    (("from_region=nowhere", "to_region=b", "mode=unplanned"), "from_region", "dr_region of its hosts"),
    (("from_region=a", "to_region=a", "mode=unplanned"), "to_region", "the region being left"),
    (("from_region=a", "to_region=b", "mode=sideways"), "mode", "unplanned"),
    (("from_region=a", "to_region=b", "mode=unplanned", "max_lag_bytes=lots"), "max_lag_bytes", "int"),
    (("from_region=a", "to_region=b", "mode=unplanned", "health_interval=soon"), "health_interval", "float"),
    (("from_region=a", "mode=unplanned"), "to_region", "required"),
)


def fingerprint(cfg: lab.LabConfig) -> dict[str, Any]:
    """Everything a run could change, read from outside: processes, roles, DNS answers, lock records."""
    locks = sorted(path.name for path in (cfg.root / "locks").glob("*.lock.json"))
    return {"postmasters": {node.name: lab._lab_postmaster_pid(node) for node in cfg.nodes},
            "redis": {node.name: lab._lab_redis_pid(node) for node in cfg.redis_nodes},
            "apps": {app.name: lab_app.app_pid(app) for app in lab_app.apps(cfg)},
            "writable": writable_nodes(cfg), "redis_primaries": redis_primaries(cfg),
            "dns": dns_answers(cfg, "api.erlmcp.lab."), "locks": locks}


def move_args(inventory: Path, *extravars: str) -> list[str]:
    words = ["run", "regional_failover", "-i", str(inventory), "--yes"]
    for value in extravars:
        words += ["-e", value]
    return words


def test_bad_input_is_refused_clearly_and_a_held_move_turns_every_runbook_on_its_targets_away(home: Path) -> None:
    with new_lab(app=True, dns=True) as cfg:
        inventory = lab_inventory(cfg)
        before = fingerprint(cfg)
        assert before["writable"] == ["pg-a"] and before["redis_primaries"] == ["redis-a"]

        # 1. Hostile and wrong input: exit 2, the parameter named, nothing changed, no run started.
        for extravars, parameter, expected in HOSTILE:
            refused = runbook_cli(*move_args(inventory, *extravars))
            assert refused.rc == 2, (extravars, str(refused))
            assert parameter in refused.stderr and expected in refused.stderr, (extravars, refused.stderr)
        no_c_database = inventory_copy(cfg, "no-db-in-c", lambda data: data["all"]["children"]["postgres"][
            "hosts"].pop("pg-c"))
        refused = runbook_cli(*move_args(no_c_database, "from_region=a", "to_region=c", "mode=unplanned"))
        assert refused.rc == 2 and "region 'c' has no single postgres node" in refused.stderr, refused
        assert not Path("/tmp/erlmcp-dr-pwned").exists()
        assert not list(home.glob("runs/*-regional_failover-*"))  # refused before a run folder was made
        assert fingerprint(cfg) == before

        # 2. A move holding the lock over its targets (stopped at its first boundary, nothing changed yet).
        env = dict(os.environ, PATH=venv_path(), **{composed.STOP_AT_BOUNDARY_ENV: "residency"})
        holder = subprocess.Popen([*runbook_command(), *move_args(inventory), *MOVE], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                  start_new_session=True)
        try:
            wait_for(lambda: holder.poll() is not None or process_state(holder.pid) == "T", CLI_HANG_GUARD,
                     interval=0.1, what="the first move holding its locks")
            assert holder.poll() is None
            records = [json.loads(path.read_text()) for path in (cfg.root / "locks").glob("*.lock.json")]
            holder_id = records[0]["run_id"]
            # the database cluster, the Redis members, the DNS zone, and each of the three regions' services
            assert len(records) == 6 and {record["run_id"] for record in records} == {holder_id}

            second = runbook_cli(*move_args(inventory), *MOVE)
            assert second.rc == 3 and holder_id in second.stderr, second
            for runbook, arguments in SINGLE_SYSTEM:
                refused = runbook_cli("run", runbook, "-i", str(inventory), *arguments, "--yes")
                assert refused.rc == 3 and holder_id in refused.stderr, (runbook, str(refused))
        finally:
            kill_run_tree(holder)
        after = fingerprint(cfg)
        assert {key: value for key, value in after.items() if key != "locks"} == {
            key: value for key, value in before.items() if key != "locks"}
        assert len(after["locks"]) == 6  # the killed holder's records, taken over by the next run (test_regional_kill)
