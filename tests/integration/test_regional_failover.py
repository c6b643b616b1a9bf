"""regional_failover on the real lab (PostgreSQL streaming replication, redis-server, Knot DNS, the lab's app):
one command moves the service from a failed region to another; undo before the point of no return, roll forward
after it; one lock over the whole move.

Judged from the outside: every database node asked whether it takes writes, every Redis node its role, every
authoritative DNS server asked directly, a write through the target region's application, the lock folder.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import dns_answers, lab_inventory, new_lab, redis_client
from runbook_helpers import (
    CLI_HANG_GUARD,
    DEADLINE,
    inventory_copy,
    plain_connect,
    runbook_cli,
    runbook_command,
    runbook_pids,
    summary,
    venv_path,
    wait_for,
)

import erlmcp_dr
from erlmcp_dr.lab import app as lab_app
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import regions as lab_regions
from erlmcp_dr.result import summary_schema

pytestmark = pytest.mark.integration

NODES = ("pg-a", "pg-b", "pg-c")
REDIS = ("redis-a", "redis-b", "redis-c")
MOVE = ("-e", "from_region=a", "-e", "to_region=b", "-e", "mode=unplanned", "-e", "health_interval=0.2")
INFRA_STEPS = ("redis", "database", "dns")  # the steps that change something (notifications and probes do not)
WRONG_TSIG = "d3JvbmcgbGFiIFRTSUcga2V5LCByZWZ1c2VkIGJ5IEtub3Q="


def writable_nodes(cfg: lab.LabConfig) -> list[str]:
    """The database nodes that answer and take writes (not in recovery, not read-only)."""
    found = []
    for node in NODES:
        try:
            with plain_connect(cfg, node) as conn:
                row = conn.execute("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')").fetchone()
        except Exception:
            continue
        if row == (False, "off"):
            found.append(node)
    return found


def redis_primaries(cfg: lab.LabConfig) -> list[str]:
    found = []
    for node in REDIS:
        try:
            with redis_client(cfg, node) as client:
                if client.info("replication").get("role") == "master":
                    found.append(node)
        except Exception:
            continue
    return found


def app_write(cfg: lab.LabConfig, region: str) -> dict[str, Any]:
    app = next(app for app in lab_app.apps(cfg) if app.region == region)
    request = urllib.request.Request(app.url + "/write", data=b'{"note": "test"}', method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the lab's loopback address
        return json.loads(response.read())


def api_answers(cfg: lab.LabConfig) -> dict[str, list[str]]:
    return dns_answers(cfg, "api.erlmcp.lab.")


def step_message(result: dict[str, Any], step: str, phase: str = "forward") -> str:
    """What a step (a built-in's sentence, or a child's failure) said, from the parent's RunResult."""
    return next(row["message"] for row in result["steps"]
                if row["task"].startswith(f"{step}{' (undo)' if phase == 'undo' else ''}:"))


def steps_of(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(step["step"], step["phase"]) for step in summary(result)["steps"]]


def parent_lock_records(cfg: lab.LabConfig) -> list[dict[str, Any]]:
    records = []
    for path in (cfg.root / "locks").glob("*.lock.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return [record for record in records if record.get("runbook") == "regional_failover"]


@pytest.fixture(scope="module")
def region_lab() -> Any:
    with new_lab(app=True, dns=True) as cfg:
        yield cfg


def test_unplanned_failover_rolls_forward_after_the_point_of_no_return_resumes_converges_and_holds_one_lock(
        region_lab: lab.LabConfig, home: Path) -> None:
    cfg = region_lab
    inventory = lab_inventory(cfg)
    assert api_answers(cfg) == {server: ["127.0.1.1"] for server in api_answers(cfg)}
    wrong_key = inventory_copy(cfg, "wrong-tsig", lambda data: data["all"]["vars"].update(dns_tsig_secret=WRONG_TSIG))
    killed = lab_regions.fail_region(cfg, "a")
    assert sorted(killed["killed"]) == ["app-a", "pg-a", "redis-a"]

    # 1. DNS refuses the wrong TSIG key after the database promotion: the run stops, nothing is undone.
    stopped = runbook_cli("run", "regional_failover", "-i", str(wrong_key), *MOVE, "--yes", "--json")
    assert stopped.rc == 1, stopped
    first = summary(stopped.json)
    assert first["status"] == "stopped" and first["failed_step"] == "dns", first["reason"]
    assert first["point_of_no_return_passed"] is True
    assert first["undone"] == [] and all(phase == "forward" for _, phase in steps_of(stopped.json))
    assert first["done"] == ["residency", "confirm", "declare", "isolate", "services", "redis", "database", "app"]
    assert first["not_done"] == ["dns", "resolved"]
    # Region a vanished: its application and Redis are confirmed down (success, nothing to stop or pause).
    assert step_message(stopped.json, "isolate") == "region a isolated: application down, Redis down"
    # ... and the isolation's record in the run's journal (what a resumed run's undo reads) says it stopped nothing.
    journal = json.loads((home / "runs" / stopped.json["run_id"] / "journal.json").read_text())
    assert journal["changes"]["isolate"] == {
        "region": "a", "app": {"name": "app-a", "state": "down", "stopped_by": None},
        "redis": {"name": "redis-a", "state": "down"}}
    # The application in b: service_recovery (a child run under the move's lock) started every service of b, in
    # dependency order, none failed.
    services = summary(json.loads((home / "runs" / f"{stopped.json['run_id']}.services" / "result.json").read_text()))
    assert services["region"] == "b" and services["failed"] == services["not_started"] == []
    assert services["started"] == [name for level in services["levels"] for name in level] != [], services
    assert "Nothing was undone" in first["reason"]
    assert writable_nodes(cfg) == ["pg-b"] and redis_primaries(cfg) == ["redis-b"]  # kept, not rolled back
    assert "to finish the move, run: runbook run regional_failover" in stopped.stderr
    resume = shlex.split(first["resume_command"])
    assert resume[-1] == "--yes" and f"incident_id={first['incident_id']}" in resume

    # 2. The resume command, with the key fixed (the inventory's), finishes the move.
    resume[resume.index("-i") + 1] = str(inventory)
    resumed = runbook_cli(*resume[1:], "--json")
    assert resumed.rc == 0, resumed
    second = summary(resumed.json)
    assert second["status"] == "completed" and second["completed"] is True
    assert second["served"] == {"before": "a", "after": "b"}
    changed = {step["step"]: step["changed"] for step in second["steps"]}
    assert changed["redis"] is False and changed["database"] is False and changed["dns"] is True
    assert writable_nodes(cfg) == ["pg-b"]
    assert redis_primaries(cfg) == ["redis-b"]
    answers = api_answers(cfg)
    assert len(answers) == 2 and all(values == ["127.0.1.2"] for values in answers.values()), answers
    wrote = app_write(cfg, "b")
    assert (wrote["region"], wrote["database"], wrote["redis"]) == ("b", "pg-b", "redis-b")
    assert parent_lock_records(cfg) == []  # released at the end

    # 3. A re-run changes nothing and exits 0; meanwhile another failover and a single-system runbook get exit 3.
    env = dict(os.environ, PATH=venv_path())
    rerun = subprocess.Popen([*runbook_command(), "run", "regional_failover", "-i", str(inventory), *MOVE, "--yes",
                              "--json"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, start_new_session=True)
    try:
        # the database cluster, the Redis members, the DNS zone and each region's services (service_recovery's key)
        held, _ = wait_for(lambda: parent_lock_records(cfg) if len(parent_lock_records(cfg)) == 6 else None,
                           DEADLINE, interval=0.1, what="the re-run holding the lock of every target")
        holder = held[0]["run_id"]
        assert {record["run_id"] for record in held} == {holder} and held[0]["pid"] in runbook_pids(rerun)
        single = runbook_cli("run", "database_failover", "-i", str(inventory), "-e", "candidate=pg-c", "--yes")
        assert single.rc == 3 and holder in single.stderr, single
        services_run = runbook_cli("run", "service_recovery", "-i", str(inventory), "-e", "region=b", "--yes")
        assert services_run.rc == 3 and holder in services_run.stderr, services_run
        second_move = runbook_cli("run", "regional_failover", "-i", str(inventory), *MOVE, "--yes")
        assert second_move.rc == 3 and holder in second_move.stderr, second_move
        out, err = rerun.communicate(timeout=CLI_HANG_GUARD)
    finally:
        if rerun.poll() is None:
            os.killpg(rerun.pid, signal.SIGKILL)
    assert rerun.returncode == 0, f"{out[-3000:]}\n{err[-3000:]}"
    again = summary(json.loads(out))
    assert again["status"] == "completed" and again["did"] == ["nothing was changed"]  # no service started again
    assert not any(step["changed"] for step in again["steps"] if step["step"] in INFRA_STEPS)
    assert writable_nodes(cfg) == ["pg-b"] and redis_primaries(cfg) == ["redis-b"]

    # 4. `runbook lab restore-region a` brings region a back without a second writer: its former primary stays
    # down (database_rejoin's job, named), its Redis comes back as a replica of the new primary, its app answers.
    restored = lab_regions.restore_region(cfg, "a")
    assert any("pg-a is a former primary" in warning and "database_rejoin" in warning
               for warning in restored["warnings"]), restored
    assert restored["redis_started"] == ["redis-a"] and writable_nodes(cfg) == ["pg-b"]
    assert redis_primaries(cfg) == ["redis-b"]
    assert app_write(cfg, "a")["database"] == "pg-b"


def test_a_failure_before_the_point_of_no_return_undoes_every_completed_step_in_reverse(home: Path) -> None:
    with new_lab(app=True, dns=True) as cfg:
        inventory = lab_inventory(cfg)
        # Residency: the lab's writes declared PII (EU only) refuse a move to b (US) before anything changes.
        pii = inventory_copy(cfg, "pii", lambda data: data["all"]["vars"]["dr_datasets"]["app_writes"].update(
            {"class": "PII"}))
        refused = runbook_cli("run", "regional_failover", "-i", str(pii), *MOVE, "--yes", "--json")
        assert refused.rc == 1, refused
        verdict = summary(refused.json)
        assert steps_of(refused.json) == [("residency", "forward")]
        assert "dataset app_writes (class PII) must stay in EU" in verdict["reason"]
        assert "region b is in US" in verdict["reason"] and "residency_override" in verdict["reason"]

        # Region a failing (its application hangs: SIGSTOP), and the candidate in b cannot be promoted (stopped).
        app_a = next(app for app in lab_app.apps(cfg) if app.region == "a")
        hung_pid = lab_app.app_pid(app_a)
        os.kill(hung_pid, signal.SIGSTOP)
        pg_b = next(node for node in cfg.nodes if node.name == "pg-b")
        os.kill(lab._lab_postmaster_pid(pg_b), signal.SIGKILL)
        wait_for(lambda: lab._lab_postmaster_pid(pg_b) is None, DEADLINE, what="pg-b gone")
        result = erlmcp_dr.run("regional_failover", inventory=inventory,
                               extravars={"from_region": "a", "to_region": "b", "mode": "unplanned",
                                          "health_interval": 0.2}).to_dict()
        assert result["succeeded"] is False
        jsonschema.validate(result["facts"]["summary"], summary_schema())  # one envelope for composed runs too
        outcome = summary(result)
        assert outcome["status"] == "undone" and outcome["failed_step"] == "database", outcome["reason"]
        assert outcome["point_of_no_return_passed"] is False
        # services (in the background, beside the promotions) starts right after the isolation; it has no undo.
        assert steps_of(result) == [("residency", "forward"), ("confirm", "forward"), ("declare", "forward"),
                                    ("isolate", "forward"), ("services", "forward"), ("redis", "forward"),
                                    ("database", "forward"), ("redis", "undo"), ("isolate", "undo"),
                                    ("declare", "undo")]
        assert outcome["undone"] == ["redis", "isolate", "declare"]
        # Region a only half-failed: the isolation stopped its hung application (app_stop_command) and paused its
        # Redis primary's writes before any promotion; the undo started the application again and lifted the pause.
        assert step_message(result, "isolate") == "region a isolated: application stopped, Redis paused"
        assert step_message(result, "isolate", "undo") == (
            "started region a's application app-a again; lifted the write pause of region a's Redis redis-a")
        assert lab_app.app_pid(app_a) not in (None, hung_pid)  # a new process: the hung one was stopped
        assert "the service is back where it was before the run" in outcome["reason"]
        assert outcome["served"] == {"before": "a", "after": "a"}
        # Region a serves again: its database is the only writer, its Redis the only primary, DNS never moved.
        assert writable_nodes(cfg) == ["pg-a"]
        assert redis_primaries(cfg) == ["redis-a"]
        assert all(values == ["127.0.1.1"] for values in api_answers(cfg).values())
        # ... and its application writes again, through its database and its Redis (no longer paused).
        wrote = app_write(cfg, "a")
        assert (wrote["region"], wrote["database"], wrote["redis"]) == ("a", "pg-a", "redis-a")
        assert parent_lock_records(cfg) == []


def test_unplanned_failover_with_synchronous_replication_serves_from_b_and_the_application_writes(home: Path) -> None:
    """Every node asks for one synchronous standby ('ANY 1 (*)'); region a is lost. The move promotes pg-b, repoints
    pg-c (region c) to it, and the application in b writes: pg-c acknowledges. No run says a primary takes no write."""
    with new_lab(app=True, dns=True) as cfg:
        lab.make_synchronous(cfg)
        before = app_write(cfg, "a")  # acknowledged by a synchronous standby of pg-a
        lab_regions.fail_region(cfg, "a")

        moved = runbook_cli("run", "regional_failover", "-i", str(lab_inventory(cfg)), *MOVE, "--yes", "--json")

        assert moved.rc == 0, moved
        assert summary(moved.json)["served"] == {"before": "a", "after": "b"}
        assert writable_nodes(cfg) == ["pg-b"]
        assert app_write(cfg, "b")["database"] == "pg-b"
        with plain_connect(cfg, "pg-b") as conn:
            row = conn.execute("SELECT session_id FROM erlmcp_app_writes WHERE id = %s", (before["id"],)).fetchone()
            assert row is not None and row[0] == before["session_id"]
            states = [r[0] for r in conn.execute("SELECT sync_state FROM pg_stat_replication").fetchall()]
        assert states == ["quorum"], states
        database = json.loads((home / "runs" / f"{moved.json['run_id']}.database" / "result.json").read_text())
        assert not any("takes no write" in w for w in summary(database)["warnings"]), summary(database)
