"""The lab's application: one erlmcp_dr.lab.app_server process per region, beside PostgreSQL and Redis.

`app-a` listens on 127.0.1.1, `app-b` on 127.0.1.2, `app-c` on 127.0.1.3 (so a DNS record can point at a
region), each on the lab's port base + lab.APP_PORT_OFFSET. All three live in `<lab>/app/`:

- database.json    written by erlmcp.dr.app_db_config; the lab writes the first one (from the running cluster)
                   only when it is missing,
- redis.json       the same for Redis (erlmcp.dr.app_redis_config updates it), first one by the lab,
- credentials.json 0600, the lab's logins (never on a command line),
- app-<region>.pid, app-<region>.log.

The processes run as the invoking user with this interpreter (the venv's Python). `down` stops a process
by the PID in its pid file, only if /proc/PID/cmdline shows it is this lab's app of that region.
See docs/app.md for the contract.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erlmcp_dr import paths
from erlmcp_dr.lab import app_server as labapp

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import write_atomic  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for  # noqa: E402

if TYPE_CHECKING:
    from erlmcp_dr.lab.config import LabConfig

APP_HOSTS = (("app-a", "a", "127.0.1.1"), ("app-b", "b", "127.0.1.2"), ("app-c", "c", "127.0.1.3"))
START_TIMEOUT = 30  # seconds each instance gets to answer /health after it is started
STOP_TIMEOUT = 10
HTTP_TIMEOUT = 10  # seconds `status` waits for an instance's /health (it answers within ~2 s when a server hangs)
MODULE = "erlmcp_dr.lab.app_server"


@dataclass(frozen=True)
class LabApp:
    name: str
    region: str
    host: str
    port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.folder / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.folder / f"{self.name}.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", MODULE, "--dir", str(self.folder), "--region", self.region,
                "--host", self.host, "--port", str(self.port)]


def apps(cfg: LabConfig) -> list[LabApp]:
    from erlmcp_dr.lab.config import APP_PORT_OFFSET

    folder = cfg.root / "app"
    return [LabApp(name, region, host, cfg.port_base + APP_PORT_OFFSET, folder) for name, region, host in APP_HOSTS]


def redis_config_path(cfg: LabConfig) -> Path:
    return cfg.root / "app" / labapp.REDIS_FILE


def credentials_path(cfg: LabConfig) -> Path:
    return cfg.root / "app" / labapp.CREDENTIALS_FILE


# ---------------------------------------------------------------- files the app reads


def write_configs(cfg: LabConfig, status: dict[str, Any]) -> list[str]:
    """credentials.json always; database.json and redis.json only when missing (a runbook's are kept), from the
    lab's status (lab.status). Returns the names of the files written."""
    from erlmcp_dr.lab.config import LAB_PASSWORD, SUPERUSER

    folder = cfg.root / "app"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    credentials = {"pg_user": SUPERUSER, "pg_password": LAB_PASSWORD, "pg_dbname": "postgres",
                   "redis_user": None, "redis_password": LAB_PASSWORD}
    write_atomic(str(credentials_path(cfg)), json.dumps(credentials, indent=2) + "\n", 0o600)
    written.append(labapp.CREDENTIALS_FILE)
    for path, content in ((cfg.app_config_path, lambda: database_config(status)),
                          (redis_config_path(cfg), lambda: redis_config(status))):
        if not path.exists():
            write_atomic(str(path), json.dumps(content(), indent=2, sort_keys=True) + "\n", 0o644)
            written.append(path.name)
    return written


def database_config(status: dict[str, Any]) -> dict[str, Any]:
    """database.json as app_db_config would write it, from lab.status: the primary and its streaming standbys."""
    return {"database": _endpoints(status["nodes"], status["primary"], "standby")}


def redis_config(status: dict[str, Any]) -> dict[str, Any]:
    """redis.json: the Redis primary and the replicas linked to it."""
    return {"redis": _endpoints(status["redis"], status["redis_primary"], "replica")}


def _endpoints(rows: list[dict[str, Any]], primary: str | None, replica_role: str) -> dict[str, Any]:
    if primary is None:
        raise RuntimeError(f"cannot write the application's first config: the lab has no single primary "
                           f"(rows: {[(r['name'], r['role']) for r in rows]}); expected exactly one")
    by_name = {row["name"]: row for row in rows}
    where = f"127.0.0.1:{by_name[primary]['port']}"
    replicas = sorted(r["name"] for r in rows if r["role"] == replica_role and r["upstream"] == where)
    return {"primary": where, "primary_node": primary,
            "replicas": [f"127.0.0.1:{by_name[name]['port']}" for name in replicas], "replica_nodes": replicas}


# ---------------------------------------------------------------- processes


def up(cfg: LabConfig, status: dict[str, Any]) -> list[str]:
    """Write the configs the app needs (from the lab's status, lab.status), start every instance that is not
    running, wait until each answers."""
    write_configs(cfg, status)
    started = {app.name: pid for app in apps(cfg) if (pid := _start(app)) is not None}
    for app in apps(cfg):
        _wait_answering(app, started.get(app.name))
    return list(started)


def _start(app: LabApp) -> int | None:
    """Start the instance unless it runs; the new process's PID, or None when it was running already."""
    if app_pid(app) is not None:
        return None
    with open(app.log_file, "ab") as log:
        proc = subprocess.Popen(app.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    app.pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def _wait_answering(app: LabApp, started_pid: int | None = None) -> None:
    """Until the instance answers /health. One just started is judged by its own PID (it exited, or not): the pid
    file's command-line check, meant for a stale file, once failed a live instance right after its start in CI."""
    from erlmcp_dr.lab.config import alive

    def gone() -> bool:
        return not alive(started_pid) if started_pid is not None else app_pid(app) is None

    def answering() -> bool:
        if gone():
            raise RuntimeError(f"{app.name} exited at start; its log {app.log_file} ends:\n{_tail(app.log_file)}")
        return fetch_health(app, timeout=2)[0] is not None

    try:
        wait_for(answering, START_TIMEOUT, interval=0.05, what=f"{app.name} answering at {app.url}/health")
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc} (lab_app.START_TIMEOUT); its log {app.log_file} ends:\n{_tail(app.log_file)}",
                          exc.last) from None


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


def app_pid(app: LabApp) -> int | None:
    """The PID in the pid file, only if that live process is this lab's app of this region."""
    from erlmcp_dr.lab.config import flag_values, pid_if_running

    def is_this_app(argv: list[str]) -> bool:
        flags = flag_values(argv)
        return MODULE in argv and flags.get("--dir") == str(app.folder) and flags.get("--region") == app.region

    return pid_if_running(app.pid_file, is_this_app)


def down(cfg: LabConfig, timeout: float = STOP_TIMEOUT) -> tuple[list[str], list[str]]:
    """Stop each instance by its PID (SIGINT, escalating past the deadline); (stopped, not running)."""
    from erlmcp_dr.lab.config import stop_pid

    stopped, not_running = [], []
    for app in apps(cfg):
        pid = app_pid(app)
        if pid is None:
            not_running.append(app.name)
            continue
        stop_pid(pid, timeout)
        app.pid_file.unlink(missing_ok=True)
        stopped.append(app.name)
    return stopped, not_running


# ---------------------------------------------------------------- status


def fetch_health(app: LabApp, timeout: float = HTTP_TIMEOUT) -> tuple[int | None, dict[str, Any] | str]:
    """(HTTP status, parsed body) of the instance's /health, or (None, why it did not answer)."""
    try:
        with urllib.request.urlopen(app.url + "/health", timeout=timeout) as response:  # noqa: S310 (http only)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, f"HTTP {exc.code} without JSON"
    except (OSError, ValueError) as exc:
        return None, str(exc)


def status(cfg: LabConfig) -> list[dict[str, Any]]:
    """Each instance: state (missing: never set up | stopped | running), pid, url and its own /health view."""
    configured = credentials_path(cfg).exists()
    return [_row(app, configured) for app in apps(cfg)]


def _row(app: LabApp, configured: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"name": app.name, "region": app.region, "url": app.url, "state": "missing",
                           "pid": None, "http": None, "postgres": None, "redis": None, "error": None}
    row["pid"] = app_pid(app)
    if row["pid"] is None:
        row["state"] = "stopped" if configured else "missing"
        return row
    row["state"] = "running"
    code, body = fetch_health(app)
    row["http"] = code
    if isinstance(body, dict):
        row["postgres"], row["redis"] = body.get("postgres"), body.get("redis")
    else:
        row["error"] = body
    return row


def ok(rows: list[dict[str, Any]]) -> bool:
    """An app never set up is fine (test labs start it only when asked); one set up must be running."""
    return all(row["state"] == "running" for row in rows) or all(row["state"] == "missing" for row in rows)


def format_rows(rows: list[dict[str, Any]]) -> list[str]:
    if not rows or all(row["state"] == "missing" for row in rows):
        return []
    lines = ["", f"{'app':6} {'region':6} {'url':24} {'state':8} {'http':4}  postgres / redis"]
    for row in rows:
        lines.append(f"{row['name']:6} {row['region']:6} {row['url']:24} {row['state']:8} "
                     f"{str(row['http'] or '-'):4}  {_view(row['postgres'])} / {_view(row['redis'])}")
        if row.get("error"):
            lines.append(f"       error: {row['error']}")
    return lines


def _view(view: dict[str, Any] | None) -> str:
    if not view:
        return "-"
    state = "writable" if view.get("writable") else "reachable" if view.get("reachable") else "unreachable"
    return f"{state} {view.get('latency_ms')} ms" + (f" ({view['error']})" if view.get("error") else "")


# ---------------------------------------------------------------- inventory


def notify_vars(cfg: LabConfig) -> dict[str, Any]:
    """Incident notifications in the lab (docs/notify.md): every severity goes to the lab's status page, the
    region-a application's POST /notifications, so `runbook run incident_notify` works on the lab as it is."""
    status_page = f"{apps(cfg)[0].url}/notifications"
    return {
        "dr_notify_channels": {"lab_status_page": {"type": "webhook", "url": status_page}},
        "dr_notify_routing": {severity: {"channels": ["lab_status_page"], "renotify_minutes": minutes}
                              for severity, minutes in (("sev1", 15), ("sev2", 30), ("sev3", 60), ("sev4", 120))},
    }


def inventory_group(cfg: LabConfig) -> dict[str, Any]:
    """The lab inventory's `app` group: one host per region with app_url, app_host, app_port, dr_region."""
    return {
        "hosts": {app.name: {"app_host": app.host, "app_port": app.port, "app_url": app.url, "dr_region": app.region}
                  for app in apps(cfg)},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
    }
