"""failback on the real lab (PostgreSQL streaming replication and pg_rewind, redis-server, Knot DNS, the lab's
app): the way back to a region that failed, once it has been healthy for the grace period.

Judged from the outside: every database node asked whether it takes writes, every Redis node its role, every
authoritative DNS server asked directly, a client writing every 20 ms through a multi-host connection string.
One lab run asserts the grace gate, the round trip a -> b -> a with the way back killed inside its handover and
finished by the same command (two operators refused meanwhile), and the re-run (the CI budget: one lab, many checks).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import lab_inventory, new_lab
from failback_kill import (
    A_REJOINED,
    FAILBACK,
    FENCED_NOT_PROMOTED,
    failback_cli,
    failback_end_state,
    kill_failback,
    seen_from_outside,
)
from regional_kill import parsed, stopped_processes_of
from runbook_helpers import DEADLINE, plain_connect, runbook_cli, summary, topology, wait_for
from test_pg_split_brain import config_files, rows, split_brain
from test_pg_standby_follow import stop
from test_regional_failover import MOVE, api_answers, redis_primaries, steps_of, writable_nodes

import erlmcp_dr
from erlmcp_dr.lab import app as lab_app
from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import regions as lab_regions
from erlmcp_dr.probe import WriteProbe, WritersSampler, multi_host_conninfo

pytestmark = pytest.mark.integration

BACK = {"from_region": "b", "to_region": "a", "grace_interval": 0.1, "catchup_timeout": 60}
INFRA_STEPS = ("rejoin", "redis", "database", "dns")


def failback(inventory: Path, **extra: Any) -> dict[str, Any]:
    return erlmcp_dr.run("failback", inventory=inventory, extravars={**BACK, **extra}).to_dict()


def app_of(cfg: lab.LabConfig, region: str) -> lab_app.LabApp:
    return next(app for app in lab_app.apps(cfg) if app.region == region)


def app_healthy(cfg: lab.LabConfig, region: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(app_of(cfg, region).url + "/health", timeout=3) as answer:  # noqa: S310
            return answer.status == 200
    except OSError:
        return False


def test_failback_waits_out_the_grace_period_then_rewinds_and_moves_back_losing_no_write_even_killed_in_its_handover(
        home: Path) -> None:
    """One lab, one way there (the CI budget): the grace gate; then the way back under a client writing every 20 ms,
    killed at its hardest moment (inside the database handover: pg-b fenced, pg-a not promoted, no writer at all)
    with a second operator refused meanwhile, and finished by the same command; then a re-run that changes nothing.
    The kill matrix of every other boundary is benchmarks/failback_kill_matrix.py."""
    with new_lab(app=True, dns=True) as cfg:
        inventory = lab_inventory(cfg)
        lab_regions.fail_region(cfg, "a")
        moved = runbook_cli("run", "regional_failover", "-i", str(inventory), *MOVE, "--yes", "--json")
        assert moved.rc == 0, moved
        lab_regions.restore_region(cfg, "a")  # pg-a stays down: a former primary, failback's to rejoin
        wait_for(lambda: app_healthy(cfg, "a"), DEADLINE, what="region a's application healthy")

        # 1. The grace gate. Healthy, but for less than the grace period: refused, saying how long is left.
        first = failback(inventory, grace_seconds=3600, grace_wait=0.3)
        gate = summary(first)
        assert first["succeeded"] is False and steps_of(first) == [("residency", "forward"), ("grace", "forward")]
        assert gate["grace"]["open"] is False and 3500 < gate["grace"]["remaining"] <= 3600
        assert "s left" in gate["reason"] and "Nothing was changed" in gate["reason"]
        # A failed sample (region a's application killed) restarts the timer ...
        os.kill(lab_app.app_pid(app_of(cfg, "a")), signal.SIGKILL)
        wait_for(lambda: not app_healthy(cfg, "a"), DEADLINE, what="region a's application down")
        failed_at = time.time()
        down = summary(failback(inventory, grace_seconds=3600, grace_wait=0.3))
        assert down["grace"]["open"] is False and down["grace"]["remaining"] == 3600
        assert "latest health sample failed" in down["reason"] and "application" in down["reason"]
        lab_app.up(cfg, lab.status(cfg))
        wait_for(lambda: app_healthy(cfg, "a"), DEADLINE, what="region a's application back")
        # ... so healthy again counts from after the failure, not from the first run's samples.
        again = summary(failback(inventory, grace_seconds=3600, grace_wait=0.3))
        assert again["grace"]["open"] is False
        run_dir = Path(os.environ["ERLMCP_DR_HOME"]) / "grace"
        history = next(run_dir.glob("a-*.json"))
        assert history.stat().st_mode & 0o077 == 0
        assert gate["grace"]["healthy_since"] < failed_at < again["grace"]["healthy_since"]
        # Nothing changed while the gate was closed.
        assert writable_nodes(cfg) == ["pg-b"] and redis_primaries(cfg) == ["redis-b"]
        assert lab._lab_postmaster_pid(cfg.node("pg-a")) is None
        assert all(values == ["127.0.1.2"] for values in api_answers(cfg).values())

        # 2. The way back, under a client writing every 20 ms and a sampler of every database node, killed inside
        # its database handover, then finished by the same command: pg_rewind, zero acknowledged writes lost, never
        # two writable databases at any sample, killed run and re-run together.
        refused: dict[str, Any] = {}

        def second_operators(journal: dict[str, Any]) -> None:
            """While the failback holds its locks (stopped before the handover, alive): a second failback and a
            single-system runbook on one of its targets are refused with exit 3, naming the holder, changing
            nothing."""
            before = seen_from_outside(cfg)
            refused["failback"] = runbook_cli("run", "failback", "-i", str(inventory), *FAILBACK, "--yes")
            refused["switchover"] = runbook_cli("run", "database_switchover", "-i", str(inventory), "-e",
                                                "candidate=pg-b", "--yes")
            refused["holder"], refused["unchanged"] = journal["run_id"], seen_from_outside(cfg) == before

        endpoints = [("127.0.0.1", node.port) for node in cfg.nodes]
        nodes = {node.name: dict(node.conn_params(), connect_timeout=1) for node in cfg.nodes}
        conninfo = multi_host_conninfo(endpoints, lab.SUPERUSER, lab.LAB_PASSWORD)
        with WritersSampler(nodes) as sampler, WriteProbe(conninfo, interval=0.02) as probe:
            killed = kill_failback(cfg, inventory, FENCED_NOT_PROMOTED, second_operators)
            between = failback_end_state(cfg)
            between_topology = topology(cfg)
            rerun = failback_cli(inventory)
        left = killed["journal"]
        for name in ("failback", "switchover"):
            assert refused[name].rc == 3, refused[name]
            assert refused["holder"] in refused[name].stderr, refused[name]
        assert refused["unchanged"] is True
        assert left["status"] == "running" and left["entered_point_of_no_return"] is True
        assert "database" in left["entered"] and "database" not in left["verified"], left
        assert {"rejoin", "caught_up", "redis"} <= set(left["verified"]) and "app" not in left["entered"], left
        assert stopped_processes_of(home) == [], "a stopped process of the run (or of its lab) remains"
        # Killed with no writer: pg-b fenced, pg-a a standby, Redis already a's, DNS still b's.
        assert between["writable"] == [] and between["redis_primaries"] == ["redis-a"], between
        assert between_topology["pg-a"]["role"] == "standby" and between["verified_state"] is None
        assert lab_dns.REGION_ADDRESSES["b"] in between["dns"]
        # The killed run rewound pg-a (its rejoin child's summary, which the failback's summary reads).
        rejoin_child = json.loads((home / "runs" / f"{left['run_id']}.rejoin" / "result.json").read_text())
        rewound = summary(rejoin_child)
        assert [m for m in rewound["methods"] if m] == ["rewind"] and sum(rewound["copied_bytes"].values()) > 0
        # The same command finished it: the same incident, rolling forward only.
        assert rerun.rc == 0, rerun
        back = summary(parsed(rerun.stdout))
        assert back["status"] == "completed" and back["served"] == {"before": "b", "after": "a"}
        assert back["incident_id"] == left["incident_id"] and back["resumed_from"]["run_id"] == left["run_id"]
        assert all(step["phase"] == "forward" for step in back["steps"])
        assert back["rejoin"]["method"].startswith("none (a handover under way"), back["rejoin"]
        assert back["grace"]["open"] is True
        assert failback_end_state(cfg)["verified_state"] == A_REJOINED
        assert writable_nodes(cfg) == ["pg-a"] and redis_primaries(cfg) == ["redis-a"]
        assert all(values == ["127.0.1.1"] for values in api_answers(cfg).values())
        assert sampler.report.max_writable <= 1 and sampler.report.rounds > 0
        assert len(probe.report.committed) > 0
        with plain_connect(cfg, "pg-a") as conn:
            assert probe.missing_on(conn) == []
        assert topology(cfg)["pg-b"]["upstream"] == "pg-a"

        # 3. A re-run changes nothing and exits 0.
        rerun = failback(inventory, grace_seconds=1.0, grace_wait=30)
        after = summary(rerun)
        assert rerun["succeeded"] is True, after["reason"]
        # Only the notifications are sent again (a notification sent twice is harmless: incident_notify's rule).
        assert [did for did in after["did"] if not did.startswith(("declare:", "resolved:"))] == [], after["did"]
        assert not any(step["changed"] for step in after["steps"] if step["step"] in INFRA_STEPS)
        assert after["rejoin"]["method"] == "none (already streaming)"
        assert writable_nodes(cfg) == ["pg-a"] and redis_primaries(cfg) == ["redis-a"]


def test_failback_refuses_a_database_that_cannot_be_rewound_unless_reclone_is_allowed(home: Path) -> None:
    with new_lab(app=True) as cfg:
        # pg-c diverged on pg-b's own timeline (both promoted): pg_rewind cannot see its own writes there.
        split_brain(cfg, rows_on_c=50)
        stop(cfg, "pg-c")
        cfg.app_config_path.unlink()  # the app follows pg-b, the one writer left
        lab_app.write_configs(cfg, lab.status(cfg))
        wait_for(lambda: app_healthy(cfg, "c"), DEADLINE, what="region c's application healthy")
        primary_rows, before, files = rows(cfg, "pg-b"), topology(cfg), config_files(cfg.node("pg-c").data_dir)

        result = erlmcp_dr.run("failback", inventory=lab_inventory(cfg), extravars={
            "from_region": "b", "to_region": "c", "grace_seconds": 0.2, "grace_interval": 0.1}).to_dict()

        outcome = summary(result)
        assert result["succeeded"] is False and outcome["failed_step"] == "rejoin", outcome["reason"]
        assert outcome["status"] == "undone" and outcome["point_of_no_return_passed"] is False
        assert "allow_reclone=true" in outcome["reason"], outcome["reason"]
        assert [step for step, _ in steps_of(result)] == ["residency", "grace", "position", "rejoin"]
        assert topology(cfg) == before and config_files(cfg.node("pg-c").data_dir) == files
        assert writable_nodes(cfg) == ["pg-b"] and rows(cfg, "pg-b") == primary_rows
