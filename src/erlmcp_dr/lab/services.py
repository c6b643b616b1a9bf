"""The lab's seven services per region, for the service_recovery runbook (docs/design.md, Service recovery order).

The seeds' recovery order (auth, API gateway, session manager, tool orchestration, resource management, monitoring,
dashboard) as a dependency graph with parallel levels:

    level 1  auth, session_manager            (session_manager needs only the database: level 0, implicit)
    level 2  api_gateway, resource_management
    level 3  tool_orchestration, monitoring   (monitoring watches the core: gateway and sessions)
    level 4  dashboard                        (shows everything)

Each service is a tiny HTTP process (`python -m erlmcp_dr.lab.services serve ...`) on its own loopback address
(127.0.2.N, region a's first) and the lab's application port. Its /health answers 503 `starting` for its start
delay, then 200, unless it is told to fail. Both are files in <lab>/services/, read by the process:
- <host>.delay  seconds of start delay (read when it starts; default DEFAULT_DELAY),
- <host>.fail   present: /health answers 503 `told to fail`.
The lab does not start them (`lab up` leaves them to the runbook); they appear in the inventory's `services` group
with their start command (`python -m erlmcp_dr.lab.services start ...`: starts the process unless it runs, then
returns). `runbook lab down` stops them by the PID in <host>.pid, only if /proc shows that service.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erlmcp_dr.lab.stop_signals import shut_down_on_stop

if TYPE_CHECKING:
    from erlmcp_dr.lab.config import LabConfig

MODULE = "erlmcp_dr.lab.services"
FOLDER = "services"  # under the lab's root
PYTHON_EXPR = "{{ ansible_playbook_python }}"
# (name, depends_on): the seeds' order, S4:305-315, made a graph (SEEDS-CHECKLIST §6).
SERVICE_GRAPH: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("auth", ()),
    ("api_gateway", ("auth",)),
    ("session_manager", ()),
    ("tool_orchestration", ("api_gateway",)),
    ("resource_management", ("session_manager",)),
    ("monitoring", ("api_gateway", "session_manager")),
    ("dashboard", ("tool_orchestration", "resource_management", "monitoring")),
)
REGIONS = ("a", "b", "c")
DEFAULT_DELAY = 0.2  # seconds a lab service answers `starting` after it starts
START_TIMEOUT = 30.0  # the inventory's service_start_timeout for the lab's services: a deadline, not a cost
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class LabService:
    name: str
    region: str
    host: str
    port: int
    folder: Path
    depends_on: tuple[str, ...]

    @property
    def host_name(self) -> str:
        """The inventory host: unique across regions."""
        return f"{self.name}-{self.region}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def file(self, suffix: str) -> Path:
        return self.folder / f"{self.host_name}.{suffix}"

    def identity(self, folder: str | None = None) -> list[str]:
        return ["--dir", folder or str(self.folder), "--name", self.host_name, "--host", self.host,
                "--port", str(self.port)]

    def start_command(self, root: str) -> list[str]:
        """As the inventory says it: the interpreter that runs ansible-playbook (it has erlmcp_dr), the lab's folder
        as the inventory names it (an expression in the shipped inventory, lab.inventory's lab_dir_expr)."""
        return [PYTHON_EXPR, "-m", MODULE, "start", *self.identity(f"{root}/{FOLDER}")]


def services(cfg: LabConfig) -> list[LabService]:
    from erlmcp_dr.lab.config import APP_PORT_OFFSET

    folder = cfg.root / FOLDER
    port = cfg.port_base + APP_PORT_OFFSET  # the app's port, on addresses of their own
    return [LabService(name, region, f"127.0.2.{r * 10 + i + 1}", port, folder, deps)
            for r, region in enumerate(REGIONS) for i, (name, deps) in enumerate(SERVICE_GRAPH)]


def service(cfg: LabConfig, name: str, region: str) -> LabService:
    return next(s for s in services(cfg) if s.name == name and s.region == region)


# ---------------------------------------------------------------- what tests and the lab do to them


def set_delay(svc: LabService, seconds: float) -> None:
    svc.folder.mkdir(parents=True, exist_ok=True)
    svc.file("delay").write_text(f"{seconds}\n")


def set_failing(svc: LabService, failing: bool) -> None:
    svc.folder.mkdir(parents=True, exist_ok=True)
    if failing:
        svc.file("fail").write_text("told to fail\n")
    else:
        svc.file("fail").unlink(missing_ok=True)


def service_pid(svc: LabService) -> int | None:
    """The PID in the pid file, only if that live process is this very service (its argv says so)."""
    from erlmcp_dr.lab.config import flag_values, pid_if_running

    def is_this_service(argv: list[str]) -> bool:
        flags = flag_values(argv)
        return MODULE in argv and "serve" in argv and flags.get("--dir") == str(svc.folder) \
            and flags.get("--name") == svc.host_name

    return pid_if_running(svc.file("pid"), is_this_service)


def pids(cfg: LabConfig) -> dict[str, int | None]:
    return {svc.host_name: service_pid(svc) for svc in services(cfg)}


def down(cfg: LabConfig, timeout: float = STOP_TIMEOUT) -> tuple[list[str], list[str]]:
    """Stop each running service by its PID; (stopped, not running)."""
    from erlmcp_dr.lab.config import stop_pid

    stopped, not_running = [], []
    for svc in services(cfg):
        pid = service_pid(svc)
        if pid is None:
            not_running.append(svc.host_name)
            continue
        stop_pid(pid, timeout)
        svc.file("pid").unlink(missing_ok=True)
        stopped.append(svc.host_name)
    return stopped, not_running


def inventory_group(cfg: LabConfig, root: str) -> dict[str, Any]:
    """The lab inventory's `services` group: the service_recovery contract (docs/design.md); root is the lab's
    folder as the inventory names it."""
    return {
        "hosts": {svc.host_name: {
            "service_name": svc.name,
            "dr_region": svc.region,
            "service_depends_on": list(svc.depends_on),
            "service_start_command": svc.start_command(root),
            "service_health_url": f"{svc.url}/health",
            "service_start_timeout": START_TIMEOUT,
        } for svc in services(cfg)},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
    }


# ---------------------------------------------------------------- the process


def start(folder: Path, name: str, host: str, port: int) -> str:
    """Start the service unless it runs (idempotent: a start command run twice leaves one process)."""
    svc = LabService(name.rsplit("-", 1)[0], name.rsplit("-", 1)[-1], host, port, folder, ())
    if service_pid(svc) is not None:
        return f"{name} already running"
    folder.mkdir(parents=True, exist_ok=True)
    with open(svc.file("log"), "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", MODULE, "serve", *svc.identity()], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True, close_fds=True)
    svc.file("pid").write_text(f"{proc.pid}\n")
    return f"{name} started, pid {proc.pid}"


def _delay(folder: Path, name: str) -> float:
    try:
        return float((folder / f"{name}.delay").read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_DELAY


def serve(folder: Path, name: str, host: str, port: int) -> None:
    started = time.monotonic()
    ready_at = started + _delay(folder, name)
    fail_file = folder / f"{name}.fail"

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path != "/health":
                return self._answer(404, {"error": "not found"})
            if fail_file.exists():
                return self._answer(503, {"status": "failing", "service": name, "reason": "told to fail"})
            if time.monotonic() < ready_at:
                return self._answer(503, {"status": "starting", "service": name})
            return self._answer(200, {"status": "ok", "service": name, "pid": os.getpid()})

        def _answer(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # quiet: health is sampled often
            return

    server = ThreadingHTTPServer((host, port), Health)
    server.daemon_threads = True
    shut_down_on_stop(server)  # lab_services.down stops it with SIGINT (then SIGQUIT, SIGKILL)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=MODULE, description="A lab service (service_recovery).")
    parser.add_argument("action", choices=["start", "serve"])
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    if args.action == "start":
        print(start(args.dir, args.name, args.host, args.port))
    else:
        serve(args.dir, args.name, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
