"""The lab's shape and its small process helpers, shared by lab/lifecycle.py (PostgreSQL, Redis, the life cycle),
lab/app.py (the application) and lab/dns.py (Knot): the nodes and their ports, where their files live, who runs them,
and how
a lab process is stopped. Nothing here starts a server; lab/lifecycle.py and its siblings import this, never each other
upwards.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from erlmcp_dr import paths
from erlmcp_dr.lab import ports as lab_ports

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import Server  # noqa: E402

LAB_DIR_ENV = paths.LAB_DIR_ENV
PORT_BASE_ENV = lab_ports.PORT_BASE_ENV
DEFAULT_PORT_BASE = lab_ports.DEFAULT_PORT_BASE  # below the ephemeral port range (lab/ports.py)
SUPERUSER = "erlmcp_dr"
REPLICATION_USER = "replicator"
# Public on purpose: the lab listens on 127.0.0.1 only. Real inventories keep these in vault.
LAB_PASSWORD = "erlmcp-lab"
LAB_OS_USER = "postgres"
NODE_NAMES = (("pg-a", "a"), ("pg-b", "b"), ("pg-c", "c"))
# Where each node's passfile sits: beside the data directory, as pg_standby_follow expects it.
PASSFILE_NAME = ".erlmcp-dr.pgpass"
REDIS_NAMES = (("redis-a", "a"), ("redis-b", "b"), ("redis-c", "c"))
REDIS_CONF_NAME = "redis.conf"
# Each lab takes PostgreSQL's ports (base .. base+2), then Redis's (base+3 .. base+5), then the DNS
# servers' (primary base+6, secondary base+7), then the application's (base+8, one instance per region,
# each on its region's loopback address).
DNS_PORT_OFFSET = len(NODE_NAMES) + len(REDIS_NAMES)
DNS_SERVER_COUNT = 2
APP_PORT_OFFSET = DNS_PORT_OFFSET + DNS_SERVER_COUNT
PORTS_PER_LAB = APP_PORT_OFFSET + 1


class LabServer(Server):
    """A lab node's PostgreSQL server: Server, and what a lab needs before it starts a server it killed on purpose."""

    def __init__(self, data_dir: str, log_file: str | None = None, name: str | None = None) -> None:
        super().__init__(data_dir, log_file=log_file)
        self.name = name or data_dir

    def wait_killed_postmaster_gone(self, timeout: float) -> bool:
        """After a kill -9 of the postmaster (a drill, `lab fail-region`), pg_ctl start fails ("another server might
        be running") while its backends still hold its shared memory, or while the postmaster is a zombie nobody has
        reaped yet (PostgreSQL's kill(pid, 0) still finds it): wait for both. Whether there was a killed postmaster
        to wait for (False: none, or it lives). ServerError or WaitTimeout past `timeout` seconds."""
        pid = self.postmaster_pid()
        if pid is None or not self.postmaster_gone():
            return False
        self.wait_orphans_gone(timeout)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout, interval=0.05,
                 what=f"{self.name}'s killed postmaster (PID {pid}) reaped")
        return True


@dataclass(frozen=True)
class LabNode:
    name: str
    region: str
    port: int
    home: Path

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def building_marker(self) -> Path:
        return self.home / "building"

    @property
    def passfile(self) -> Path:
        """The replication passfile primary_conninfo names (the parent of the data dir)."""
        return self.home / PASSFILE_NAME

    def server(self) -> LabServer:
        return LabServer(str(self.data_dir), log_file=str(self.log_file), name=self.name)

    def conn_params(self) -> dict[str, Any]:
        return dict(host="127.0.0.1", port=self.port, user=SUPERUSER, password=LAB_PASSWORD,
                    dbname="postgres", connect_timeout=3)


@dataclass(frozen=True)
class LabRedisNode:
    """One redis-server of the lab: its files live in `home` (config, pid file, log) and `home/data` (dir)."""

    name: str
    region: str
    port: int
    home: Path

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def conf_file(self) -> Path:
        return self.home / REDIS_CONF_NAME

    @property
    def pid_file(self) -> Path:
        return self.home / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "redis.log"

    def conn_params(self) -> dict[str, Any]:
        return dict(host="127.0.0.1", port=self.port, user=None, password=LAB_PASSWORD, connect_timeout=3)


@dataclass(frozen=True)
class LabConfig:
    root: Path
    port_base: int = DEFAULT_PORT_BASE

    @classmethod
    def from_env(cls) -> LabConfig:
        """$ERLMCP_DR_LAB_PORT_BASE, else the base the lab in this folder was built with (a lab made on other
        ports, or before the default moved below the ephemeral range, keeps them), else the default."""
        root = paths.lab_root()  # $ERLMCP_DR_LAB_DIR, the checkout's .lab/, else <state home>/lab
        base = os.environ.get(PORT_BASE_ENV)
        recorded = lab_ports.recorded_port_base(root)
        return cls(root=root, port_base=int(base) if base else recorded or DEFAULT_PORT_BASE)

    @property
    def nodes(self) -> list[LabNode]:
        return [LabNode(name, region, self.port_base + i, self.root / "pg" / name)
                for i, (name, region) in enumerate(NODE_NAMES)]

    @property
    def app_config_path(self) -> Path:
        return self.root / "app" / "database.json"

    @property
    def redis_nodes(self) -> list[LabRedisNode]:
        first = self.port_base + len(NODE_NAMES)
        return [LabRedisNode(name, region, first + i, self.root / "redis" / name)
                for i, (name, region) in enumerate(REDIS_NAMES)]

    def redis_node(self, name: str) -> LabRedisNode:
        for node in self.redis_nodes:
            if node.name == name:
                return node
        raise KeyError(f"no lab Redis node {name!r}; the lab has {', '.join(n for n, _ in REDIS_NAMES)}")

    def node(self, name: str) -> LabNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no lab node {name!r}; the lab has {', '.join(n for n, _ in NODE_NAMES)}")


def free_port_base(low: int = lab_ports.TEST_PORTS[0], high: int = lab_ports.TEST_PORTS[1]) -> int:
    """A base with PORTS_PER_LAB consecutive free loopback ports (PostgreSQL's, Redis's, DNS's, the app's), for
    labs beside the default one; never inside the kernel's ephemeral port range (lab/ports.py)."""
    return lab_ports.free_port_base(low, high, PORTS_PER_LAB)


def ensure_port_free(port: int, what: str) -> None:
    """Before a lab server is started: its port is free, or the error names who holds it (lab/ports.py)."""
    if not lab_ports.port_free(port):
        raise RuntimeError(lab_ports.describe_busy_port(port, what))


def lab_os_user() -> pwd.struct_passwd:
    """Who runs the servers: the caller, or (as root, which PostgreSQL refuses) `postgres`."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(LAB_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", LAB_OS_USER],
                       check=True)
        return pwd.getpwnam(LAB_OS_USER)


def make_owned_dir(path: Path, mode: int = 0o700) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if os.geteuid() == 0:
        user = lab_os_user()
        os.chown(path, user.pw_uid, user.pw_gid)


def write_private(path: Path, content: str) -> None:
    """Write a file only the lab OS user can read (0600, created so, renamed into place)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        if os.geteuid() == 0:
            user = lab_os_user()
            os.chown(tmp, user.pw_uid, user.pw_gid)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stop_pid(pid: int, timeout: float) -> None:
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether the process lives: it exists and is not a zombie (a killed process its parent has not reaped yet).

    A multi-threaded process (knotd, redis-server) killed with SIGKILL shows its first thread as a zombie while its
    other threads are still exiting: they still hold its files, so its listening sockets still take packets (a DNS
    client then times out instead of being refused). It lives until every thread has exited."""
    state = process_state(pid)
    if state is None:
        return False
    return state != "Z" or _threads_still_running(pid)


def _threads_still_running(pid: int) -> bool:
    """Whether a thread of the process other than its zombie first thread has not exited yet."""
    try:
        threads = [int(name) for name in os.listdir(f"/proc/{pid}/task") if int(name) != pid]
    except (OSError, ValueError):
        return False
    return any(_state_letter(f"/proc/{pid}/task/{thread}/stat") not in (None, "Z", "X") for thread in threads)


def process_state(pid: int) -> str | None:
    """The process's state letter in /proc (R, S, Z...); None when there is no such process."""
    return _state_letter(f"/proc/{pid}/stat")


def _state_letter(stat_path: str) -> str | None:
    """The state letter of a process's or thread's stat file; None when it has gone."""
    try:
        with open(stat_path) as handle:
            # After the command name, which is in parentheses and may itself hold spaces or parentheses.
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_if_running(pid_file: Path, is_ours: Callable[[list[str]], bool]) -> int | None:
    """The PID in `pid_file`, only if that process lives and its command line (argv) passes `is_ours`: a pid file
    outlives its process, and its PID may belong to another program since."""
    try:
        pid = int(pid_file.read_text().split()[0])
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) and is_ours(argv) else None


def flag_values(argv: list[str]) -> dict[str, str]:
    """Each argument of a command line mapped to the one after it: {"--dir": "/x"} for `... --dir /x`."""
    return dict(zip(argv, argv[1:], strict=False))
