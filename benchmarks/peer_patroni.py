"""Patroni as the benchmark's peer: its own virtualenv, a three-member cluster on free loopback ports.

The cluster runs as the lab's unprivileged OS user (`postgres` when this runs as root), with the raft
store, ttl 30 / loop_wait 10 and the lab's own PostgreSQL settings (read from erlmcp_dr.lab.lifecycle, so the
two never drift). Every process it starts is stopped by its PID; every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import ports as lab_ports
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import find_bin_dir  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"  # the pyenv Python under /root is not readable by the lab's OS user
DEFAULT_VENV = Path("/var/tmp/erlmcp-dr-patroni")
PATRONI_REQUIREMENT = "patroni[raft,psycopg3]"
SCOPE = "erlmcp-bench"
MEMBERS = 3
# Settings Patroni owns itself (it writes them from its own config), everything else is the lab's.
PATRONI_OWNED = {"listen_addresses", "port", "cluster_name"}


def ensure_venv(venv: Path = DEFAULT_VENV, timeout: float = 900) -> Path:
    """The virtualenv with Patroni, built on the system Python the first time (world-readable)."""
    if (venv / "bin" / "patroni").is_file():
        return venv
    old = os.umask(0o022)
    try:
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, timeout=timeout)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", PATRONI_REQUIREMENT], check=True,
                       timeout=timeout)
    finally:
        os.umask(old)
    return venv


def lab_parameters() -> dict[str, str]:
    """The lab's postgresql.conf settings (erlmcp_dr.lab.lifecycle), minus those Patroni sets from its own config."""
    probe = lab.LabNode("probe", "probe", 1, Path("/nonexistent"))
    params = {}
    for line in lab._lab_settings(probe).splitlines():  # noqa: SLF001 - one source for both tools' settings
        if "=" not in line or line.lstrip().startswith("#"):
            continue
        name, value = (part.strip() for part in line.split("=", 1))
        if name not in PATRONI_OWNED:
            params[name] = value.strip("'")
    return params


def _free(port: int) -> bool:
    return lab_ports.port_free(port)  # the lab's own loopback check


def free_ports(count: int, low: int = 40000, high: int = 60000) -> int:
    """A base with `count` consecutive free loopback ports (the lab draws below 40000)."""
    for _ in range(200):
        base = random.randrange(low, high - count)
        if all(_free(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found between {low} and {high}")


@dataclass(frozen=True)
class Member:
    name: str
    home: Path
    pg_port: int
    rest_port: int
    raft_port: int

    @property
    def config_file(self) -> Path:
        return self.home / "patroni.yml"

    @property
    def log_file(self) -> Path:
        return self.home / "patroni.log"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def conn_params(self) -> dict[str, Any]:
        return dict(host="127.0.0.1", port=self.pg_port, user=lab.SUPERUSER, password=lab.LAB_PASSWORD,
                    dbname="postgres", connect_timeout=3)


class PatroniCluster:
    """Three Patroni members (raft DCS) under root, started and stopped by this object only."""

    def __init__(self, root: Path, venv: Path) -> None:
        self.root = root
        self.venv = venv
        base = free_ports(3 * MEMBERS)
        self.members = [Member(f"p{i}", root / f"p{i}", base + i, base + MEMBERS + i, base + 2 * MEMBERS + i)
                        for i in range(MEMBERS)]
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- configuration
    def _config(self, member: Member) -> dict[str, Any]:
        partners = [f"127.0.0.1:{m.raft_port}" for m in self.members if m is not member]
        auth = {"superuser": {"username": lab.SUPERUSER, "password": lab.LAB_PASSWORD},
                "replication": {"username": lab.REPLICATION_USER, "password": lab.LAB_PASSWORD},
                "rewind": {"username": lab.SUPERUSER, "password": lab.LAB_PASSWORD}}
        return {
            "scope": SCOPE, "name": member.name,
            "restapi": {"listen": f"127.0.0.1:{member.rest_port}", "connect_address": f"127.0.0.1:{member.rest_port}"},
            "raft": {"data_dir": str(member.home / "raft"), "self_addr": f"127.0.0.1:{member.raft_port}",
                     "partner_addrs": partners},
            "bootstrap": {
                "dcs": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "maximum_lag_on_failover": 1048576,
                        "postgresql": {"use_pg_rewind": True, "parameters": lab_parameters()}},
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{member.pg_port}", "connect_address": f"127.0.0.1:{member.pg_port}",
                "data_dir": str(member.data_dir), "bin_dir": find_bin_dir(), "pgpass": str(member.home / "pgpass"),
                "authentication": auth, "parameters": {"unix_socket_directories": ""},
                "pg_hba": ["host all all 127.0.0.1/32 scram-sha-256",
                           "host replication all 127.0.0.1/32 scram-sha-256"],
            },
        }

    # -- life cycle
    def start(self, timeout: float = 180) -> None:
        user = lab.lab_os_user()
        lab.make_owned_dir(self.root, 0o755)  # owned by the lab user, as the lab's are
        for member in self.members:
            lab.make_owned_dir(member.home)
            member.config_file.write_text(json.dumps(self._config(member), indent=1))  # JSON is YAML
            os.chown(member.config_file, user.pw_uid, user.pw_gid)
            member.config_file.chmod(0o600)
        for member in self.members:
            with open(member.log_file, "ab") as log:
                self._procs[member.name] = subprocess.Popen(
                    [str(self.venv / "bin" / "patroni"), str(member.config_file)], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, cwd=str(member.home), user=user.pw_uid,
                    group=user.pw_gid, env={"PATH": "/usr/bin:/bin", "HOME": str(member.home), "LANG": "C.UTF-8"},
                )
        self.wait_healthy(timeout)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM every Patroni started here (each stops its PostgreSQL), SIGKILL what outlives the deadline."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        try:
            wait_for(lambda: all(p.poll() is not None for p in self._procs.values()), timeout=timeout,
                     interval=0.2, what="Patroni members to stop")
        except WaitTimeout:
            for member in self.members:
                self._kill_postmaster(member)
            for proc in self._procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
        self._procs.clear()

    @staticmethod
    def _kill_postmaster(member: Member) -> None:
        pidfile = member.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # -- state
    def cluster(self) -> list[dict[str, Any]]:
        """Members as Patroni's REST API reports them (the first member that answers)."""
        for member in self.members:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{member.rest_port}/cluster", timeout=2) as resp:
                    return list(json.load(resp).get("members", []))
            except (urllib.error.URLError, OSError, ValueError):
                continue
        return []

    def leader(self) -> str | None:
        leaders = [m["name"] for m in self.cluster() if m.get("role") == "leader" and m.get("state") == "running"]
        return leaders[0] if len(leaders) == 1 else None

    def _healthy(self) -> bool:
        dead = [name for name, proc in self._procs.items() if proc.poll() is not None]
        if dead:
            raise RuntimeError(f"Patroni member(s) {', '.join(dead)} exited; see {self.root}/*/patroni.log")
        members = self.cluster()
        leaders = [m for m in members if m.get("role") == "leader" and m.get("state") == "running"]
        streaming = [m for m in members if m.get("role") == "replica" and m.get("state") == "streaming"
                     and m.get("lag") in (0, "0")]
        return len(leaders) == 1 and len(streaming) == MEMBERS - 1

    def wait_healthy(self, timeout: float = 120) -> None:
        wait_for(self._healthy, timeout=timeout, interval=0.2, what="a Patroni leader and every replica streaming")

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def switchover(self, candidate: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`patronictl switchover` to candidate, now, as an operator types it."""
        leader = self.leader()
        if leader is None:
            raise RuntimeError(f"no single running Patroni leader: {self.cluster()}")
        argv = [str(self.venv / "bin" / "patronictl"), "-c", str(self.member(leader).config_file), "switchover",
                SCOPE, "--leader", leader, "--candidate", candidate, "--force"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"})
