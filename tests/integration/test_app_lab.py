"""The lab's application (src/erlmcp_dr/lab/app_server.py, lab/app.py) on a real lab: PostgreSQL and Redis, three
instances, each judged through its own HTTP endpoints and the lab's status."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from runbook_helpers import DEADLINE, inventory_path, new_lab, runbook_cli, sql

from erlmcp_dr.lab import app as lab_app
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import write_atomic  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402

pytestmark = pytest.mark.integration


def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def app_url(cfg: lab.LabConfig, region: str) -> str:
    return next(app.url for app in lab_app.apps(cfg) if app.region == region)


def wait_health(cfg: lab.LabConfig, region: str, want: int, what: str) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        code, body = call(app_url(cfg, region) + "/health")
        return body if code == want else None

    body, _ = wait_for(seen, DEADLINE, interval=0.1, what=what)
    return body


@pytest.fixture
def app_lab() -> Iterator[lab.LabConfig]:
    with new_lab(app=True) as cfg:
        yield cfg


def test_the_app_runs_per_region_writes_reads_and_stops_by_pid(app_lab: lab.LabConfig) -> None:
    cfg = app_lab
    rows = lab.status(cfg)["app"]
    assert [(r["name"], r["state"], r["http"]) for r in rows] == [
        ("app-a", "running", 200), ("app-b", "running", 200), ("app-c", "running", 200)], rows
    assert [r["url"].split("//")[1].split(":")[0] for r in rows] == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    assert "app-a" in lab.format_status(lab.status(cfg))
    assert (lab_app.credentials_path(cfg).stat().st_mode & 0o777) == 0o600
    assert json.loads(lab_app.redis_config_path(cfg).read_text())["redis"]["primary_node"] == "redis-a"
    for app in lab_app.apps(cfg):
        argv = open(f"/proc/{lab_app.app_pid(app)}/cmdline", "rb").read()
        assert lab.LAB_PASSWORD.encode() not in argv

    code, written = call(app_url(cfg, "a") + "/write", {"note": "from region a"})
    assert code == 200, written
    assert written["database"] == "pg-a" and written["redis"] == "redis-a"
    code, found = call(app_url(cfg, "b") + f"/read/{written['id']}")  # another region's instance, same databases
    assert code == 200, found
    assert found["row"]["note"] == "from region a" and found["row"]["session_id"] == written["session_id"]
    assert found["session"]["id"] == written["id"]
    assert call(app_url(cfg, "c") + "/read/999999")[0] == 404

    # The lab's inventory routes incident notifications to region a's status page: incident_notify works as is.
    sent = runbook_cli("run", "incident_notify", "-i", str(inventory_path(cfg)), "-e", "incident_id=INC-LAB-1",
                       "-e", "phase=declared", "-e", "severity=sev2", "-e", "title=Region a degraded",
                       "-e", 'fields={"affected": "api", "status": "investigating", "eta": "30 min"}', "--yes")
    assert sent.rc == 0, sent.stdout + sent.stderr
    code, seen = call(app_url(cfg, "a") + "/notifications")
    assert code == 200 and len(seen["notifications"]) == 1, seen
    assert "INC-LAB-1" in json.dumps(seen["notifications"][0]["body"]), seen

    pids = [lab_app.app_pid(app) for app in lab_app.apps(cfg)]
    stopped = lab.down(cfg)
    assert stopped["app_stopped"] == ["app-a", "app-b", "app-c"], stopped
    assert all(lab_app.app_pid(app) is None for app in lab_app.apps(cfg))
    assert all(not _alive(pid) for pid in pids)
    assert [r["state"] for r in lab_app.status(cfg)] == ["stopped"] * 3


def _alive(pid: int | None) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_health_follows_the_config_a_fence_and_a_stopped_primary(app_lab: lab.LabConfig) -> None:
    cfg = app_lab
    path = cfg.app_config_path
    original = path.read_text()
    loads = call(app_url(cfg, "a") + "/health")[1]["config_loads"]["database"]

    # database.json rewritten (a new file renamed into place, as app_db_config does): no restart needed
    standby = json.loads(original)
    standby["database"].update(primary=f"127.0.0.1:{cfg.node('pg-b').port}", primary_node="pg-b")
    write_atomic(str(path), json.dumps(standby), 0o644)
    body = wait_health(cfg, "a", 503, "app-a seeing the standby pg-b as its database")
    assert body["postgres"]["reachable"] and not body["postgres"]["writable"], body
    assert body["postgres"]["endpoint"].endswith(str(cfg.node("pg-b").port))
    assert body["config_loads"]["database"] == loads + 1
    assert body["redis"]["writable"] and body["redis"]["latency_ms"] >= 0
    write_atomic(str(path), original, 0o644)
    wait_health(cfg, "a", 200, "app-a back on pg-a")

    # redis.json the same way: a replica is reachable, not writable
    redis_path = lab_app.redis_config_path(cfg)
    redis_original = redis_path.read_text()
    replica = json.loads(redis_original)
    replica["redis"].update(primary=f"127.0.0.1:{cfg.redis_node('redis-c').port}", primary_node="redis-c")
    write_atomic(str(redis_path), json.dumps(replica), 0o644)
    body = wait_health(cfg, "a", 503, "app-a seeing the replica redis-c as its Redis")
    assert body["redis"]["reachable"] and body["redis"]["role"] == "slave" and body["postgres"]["writable"], body
    write_atomic(str(redis_path), redis_original, 0o644)
    wait_health(cfg, "a", 200, "app-a back on redis-a")

    # a fenced (read-only) primary: reachable, not writable
    sql(cfg, "pg-a", "ALTER SYSTEM SET default_transaction_read_only = on")
    sql(cfg, "pg-a", "SELECT pg_reload_conf()")
    body = wait_health(cfg, "b", 503, "app-b seeing pg-a fenced")
    assert body["postgres"] | {"latency_ms": 0} == {"reachable": True, "writable": False, "latency_ms": 0,
                                                    "endpoint": f"127.0.0.1:{cfg.node('pg-a').port}",
                                                    "error": body["postgres"]["error"]}
    assert "read-only" in body["postgres"]["error"]
    code, refused = call(app_url(cfg, "b") + "/write", {"note": "must not commit"})
    assert code == 503 and "read-only" in refused["error"], refused
    sql(cfg, "pg-a", "ALTER SYSTEM RESET default_transaction_read_only")
    sql(cfg, "pg-a", "SELECT pg_reload_conf()")
    wait_health(cfg, "b", 200, "app-b seeing pg-a unfenced")

    # a stopped primary: unreachable
    cfg.node("pg-a").server().stop(timeout=lab.START_TIMEOUT)
    body = wait_health(cfg, "c", 503, "app-c seeing pg-a stopped")
    assert not body["postgres"]["reachable"] and "refused" in body["postgres"]["error"].lower(), body
    assert body["redis"]["writable"]
