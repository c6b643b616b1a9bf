"""The pg modules' action plugins: the engine runs in the controller when the target is this machine, the
module is shipped otherwise (erlmcp_dr_pg_on_controller=false, become, a remote connection), same result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import ansible_runner
import pytest
from conftest import login_args
from runbook_helpers import venv_path

from erlmcp_dr import paths
from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

SHIPPED_MARK = "AnsiballZ_"  # what -vvv prints when a module is copied to the target and started there


def run_verbose(module: str, args: dict[str, Any], host_vars: str = "", check: bool = False) -> tuple[dict, str]:
    """One module task on localhost at -vvv: (its result, what ansible printed)."""
    with tempfile.TemporaryDirectory(prefix="erlmcp-dr-ctl-") as private:
        runner = ansible_runner.run(
            private_data_dir=private, host_pattern="localhost", module=module, module_args=json.dumps(args),
            inventory=f"localhost ansible_connection=local ansible_python_interpreter={sys.executable} {host_vars}",
            cmdline="--check" if check else None, verbosity=3, quiet=True,
            envvars={"ANSIBLE_COLLECTIONS_PATH": str(paths.collections_path()), "PATH": venv_path()},
        )
        output = runner.stdout.read()
        for event in runner.events:
            if event.get("event") in ("runner_on_ok", "runner_on_failed"):
                result = dict(event["event_data"]["res"])
                result.setdefault("failed", event["event"] == "runner_on_failed")
                return result, output
    raise AssertionError(f"{module} produced no result:\n{output}")


def run_module_file(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run a module's file as Ansible would on the target (its arguments in a file), without the action plugin."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
        handle.flush()
        proc = subprocess.run([sys.executable, "-m", f"ansible_collections.erlmcp.dr.plugins.modules.{name}",
                               handle.name], capture_output=True, text=True, check=False, timeout=120,
                              env=dict(os.environ, PYTHONPATH=str(paths.collections_path())))
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def info_args(cfg: lab.LabConfig) -> dict[str, Any]:
    return dict(nodes=[{"name": n.name, "host": "127.0.0.1", "port": n.port} for n in cfg.nodes],
                login_user=lab.SUPERUSER, login_password=lab.LAB_PASSWORD)


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result[key] for key in ("changed", "failed", "primary", "standbys", "system_identifier")}


def test_replication_info_runs_in_the_controller_and_shipped_alike(fresh_lab):
    here, here_output = run_verbose("erlmcp.dr.pg_replication_info", info_args(fresh_lab))
    shipped, shipped_output = run_verbose("erlmcp.dr.pg_replication_info", info_args(fresh_lab),
                                          host_vars="erlmcp_dr_pg_on_controller=false")

    assert SHIPPED_MARK not in here_output, "expected the engine to run in the controller, the module was shipped"
    assert SHIPPED_MARK in shipped_output, "expected the module shipped with erlmcp_dr_pg_on_controller=false"
    assert comparable(here) == comparable(shipped)
    assert here["primary"] == "pg-a" and here["standbys"] == ["pg-b", "pg-c"]
    assert lab.LAB_PASSWORD not in json.dumps(here)


def test_failures_keep_the_engine_message_and_facts_in_the_controller(fresh_lab):
    """A candidate that is the primary itself: the engine's failure, with its facts, as the module gave it."""
    args = dict(login_args(fresh_lab, "pg-a"), primary_host="127.0.0.1", primary_port=fresh_lab.node("pg-a").port)
    here, output = run_verbose("erlmcp.dr.pg_promote", args)
    shipped, _ = run_verbose("erlmcp.dr.pg_promote", args, host_vars="erlmcp_dr_pg_on_controller=false")

    assert SHIPPED_MARK not in output
    assert here["failed"] and shipped["failed"]
    assert here["msg"] == shipped["msg"]
    assert set(shipped) - {"invocation", "_ansible_no_log"} <= set(here) | {"exception"}


def test_argument_errors_are_reported_before_anything_runs(fresh_lab):
    here, _ = run_verbose("erlmcp.dr.pg_fence", dict(login_args(fresh_lab, "pg-a"), method="stop"), check=True)

    assert here["failed"]
    assert "data_dir" in here["msg"]


def test_app_config_is_computed_and_written_in_the_controller_and_shipped_alike(fresh_lab, tmp_path):
    """erlmcp.dr.app_db_config's action plugin writes the file itself (no module shipped); shipped, the module
    writes the same bytes."""
    cluster, _ = run_verbose("erlmcp.dr.pg_replication_info", info_args(fresh_lab))
    live = {key: value for key, value in cluster.items() if key not in ("changed", "failed", "invocation")}
    here_path, shipped_path = tmp_path / "here.json", tmp_path / "shipped.json"

    here, output = run_verbose("erlmcp.dr.app_db_config", dict(path=str(here_path), cluster=live))
    shipped, shipped_output = run_verbose("erlmcp.dr.app_db_config", dict(path=str(shipped_path), cluster=live),
                                          host_vars="erlmcp_dr_pg_on_controller=false")

    assert SHIPPED_MARK not in output, "expected the engine to run in the controller, the module was shipped"
    assert SHIPPED_MARK in shipped_output
    assert not here["failed"] and here["changed"] is True and shipped["changed"] is True, (here, shipped)
    assert here["config"] == shipped["config"] and here["config"]["database"]["primary_node"] == "pg-a"
    assert here_path.read_bytes() == shipped_path.read_bytes()


def test_fence_and_promote_fences_in_the_controller_or_ships_only_the_fence(fresh_lab):
    """pg_promote with fence.perform: the promotion runs in the controller either way (it holds the connections
    across the fence); the fence runs in the controller for a local old primary, and is the only module shipped
    with erlmcp_dr_pg_on_controller=false (the path of a remote old primary)."""
    cfg = fresh_lab
    old = cfg.node("pg-a")
    args = dict(login_args(cfg, "pg-b"), primary_host="127.0.0.1", primary_port=old.port, max_lag_bytes=0,
                catchup_timeout=60, members=[dict(name=n.name, host="127.0.0.1", port=n.port) for n in cfg.nodes],
                fence=dict(method="stop", perform=True, data_dir=str(old.data_dir), log_file=str(old.log_file),
                           require_clean_shutdown=True))

    planned, plan_output = run_verbose("erlmcp.dr.pg_promote", args, check=True)
    assert SHIPPED_MARK not in plan_output, "expected the fence and the promotion to run in the controller"
    assert planned["would_promote"] is True and planned["fence_result"]["changed"] is True, planned
    assert old.server().is_running()

    # The module itself (what is shipped whole when psycopg cannot be imported in the controller) fences locally.
    module_plan = run_module_file("pg_promote", dict(args, _ansible_check_mode=True))
    assert module_plan["would_promote"] is True and module_plan["fence_result"]["changed"] is True, module_plan
    assert old.server().is_running()

    done, output = run_verbose("erlmcp.dr.pg_promote", args, host_vars="erlmcp_dr_pg_on_controller=false")
    assert f"{SHIPPED_MARK}pg_fence" in output, "expected pg_fence shipped with erlmcp_dr_pg_on_controller=false"
    assert f"{SHIPPED_MARK}pg_promote" not in output, "expected the promotion to run in the controller"
    assert not done["failed"] and done["promoted"] is True, done
    assert done["fence_result"]["fenced"] is True and done["fence_result"]["clean_shutdown"] is True, done
    assert "invocation" not in done["fence_result"] and lab.LAB_PASSWORD not in json.dumps(done)
    assert not old.server().is_running()
