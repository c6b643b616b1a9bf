"""A runbook never stops, starts or rewinds a server it did not read (issue 23 row 11), on the real lab.

The run reads a server at pg_host:pg_port and acts on pg_data_dir: when the inventory swaps two nodes' data
directories (or names another lab's ports with this lab's directories), every stop/start/rewind path refuses before
touching anything, naming both servers.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import login_args, run_module
from runbook_helpers import failure_message, host_vars, inventory_copy, run_json, topology
from test_pg_standby_follow import follow_args

from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration


def fence_args(cfg: lab.LabConfig, login_node: str, data_node: str, **extra: Any) -> dict[str, Any]:
    data = cfg.node(data_node)
    args = dict(login_args(cfg, login_node), method="stop", data_dir=str(data.data_dir), log_file=str(data.log_file),
                wait_timeout=60)
    args.update(extra)
    return args


def names_both(message: str, cfg: lab.LabConfig, login_node: str, data_node: str) -> bool:
    return (str(cfg.node(data_node).data_dir) in message and f"port {cfg.node(data_node).port}" in message
            and f"127.0.0.1:{cfg.node(login_node).port}" in message)


def test_fence_refuses_another_servers_data_directory_before_stopping_or_starting_it(untouched):
    cfg = untouched
    for state, doing in (("fenced", "fencing"), ("unfenced", "unfencing")):
        for check in (True, False):
            result = run_module("erlmcp.dr.pg_fence", fence_args(cfg, "pg-a", "pg-b", state=state), check=check)

            assert result["failed"], result
            assert result["msg"].startswith(f"refused before {doing} anything"), result["msg"]
            assert names_both(result["msg"], cfg, "pg-a", "pg-b"), result["msg"]


def test_fence_refuses_a_stopped_data_directory_while_the_server_read_still_runs(fresh_lab):
    cfg = fresh_lab
    cfg.node("pg-c").server().stop(mode="fast")
    before = topology(cfg)

    result = run_module("erlmcp.dr.pg_fence", fence_args(cfg, "pg-a", "pg-c"))

    assert result["failed"] and "is not running, but the server read at" in result["msg"], result["msg"]
    assert topology(cfg) == before


def test_follow_refuses_another_servers_data_directory_before_rewinding_it(untouched):
    cfg = untouched
    args = follow_args(cfg, "pg-c", "pg-a", method="rewind", data_dir=str(cfg.node("pg-b").data_dir))

    result = run_module("erlmcp.dr.pg_standby_follow", args)

    assert result["failed"] and result["msg"].startswith("refused before rejoining anything"), result["msg"]
    assert names_both(result["msg"], cfg, "pg-c", "pg-b"), result["msg"]


def test_failover_with_swapped_data_directories_refuses_before_stopping_anything(fresh_lab, home):
    cfg = fresh_lab

    def swap(data: dict[str, Any]) -> None:
        a, b = host_vars(data, "pg-a"), host_vars(data, "pg-b")
        a["pg_data_dir"], b["pg_data_dir"] = b["pg_data_dir"], a["pg_data_dir"]

    inventory = inventory_copy(cfg, "swapped", swap)
    before = topology(cfg)

    _, result = run_json("run", "database_failover", "-i", str(inventory), "-e", "candidate=pg-c", "--yes",
                         expect_rc=1)

    message = failure_message(result)
    assert "refused before fencing anything" in message, message
    assert names_both(message, cfg, "pg-a", "pg-b"), message
    assert topology(cfg) == before  # pg-a still the primary, nobody stopped, restarted or promoted
