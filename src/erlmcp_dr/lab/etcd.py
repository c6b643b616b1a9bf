"""The lab's etcd: three real members on loopback, one labelled per region (etcd-a, etcd-b, etcd-c).

They hold the run lock's shared store (dr_lock_store: etcd, plugins/module_utils/_lock/etcd.py) as three members in
three regions would: any one may be lost, two lost means no quorum and every run fails closed. Each member runs
Debian's `etcd` from `<root>/etcd/<name>/` (data/, etcd.log, etcd.pid), on two ports of the lab's range (client,
peer), and is stopped by the PID in its pid file, only if that process is an etcd started with this member's data
directory. `runbook lab up --etcd` starts them; the lab's inventory then says dr_lock_store: etcd. The tests start
one cluster per session (EtcdCluster on a free port range) and delete its keys between tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from erlmcp_dr import paths
from erlmcp_dr.lab import ports as lab_ports

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for  # noqa: E402

ETCD = "etcd"
REGIONS = ("a", "b", "c")
PORTS_PER_MEMBER = 2  # client, peer
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# The lab's etcd sits after every port a lab copy takes (lab_config.PORTS_PER_LAB), with room for more servers.
DEFAULT_PORT_OFFSET = 20
TEST_TTL = 3  # seconds: the lease TTL the lab inventory gives its runs (a killed run's lock is free quickly)


@dataclass(frozen=True)
class EtcdMember:
    name: str
    region: str
    client_port: int
    peer_port: int
    home: Path

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def pid_file(self) -> Path:
        return self.home / "etcd.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "etcd.log"


@dataclass(frozen=True)
class EtcdCluster:
    """Three members on ports base .. base+5 (client, peer per member), their files under root."""

    root: Path
    port_base: int

    @property
    def members(self) -> list[EtcdMember]:
        return [EtcdMember(f"etcd-{region}", region, self.port_base + PORTS_PER_MEMBER * i,
                           self.port_base + PORTS_PER_MEMBER * i + 1, self.root / f"etcd-{region}")
                for i, region in enumerate(REGIONS)]

    def member(self, region: str) -> EtcdMember:
        return next(m for m in self.members if m.region == region)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def token(self) -> str:
        """The cluster token: distinct per lab root, so members of two labs never join each other."""
        return "erlmcp-lab-" + hashlib.sha256(str(self.root).encode()).hexdigest()[:12]

    def inventory_vars(self, ttl: Optional[int] = TEST_TTL) -> dict[str, Any]:
        """What the lab inventory says so runbooks take the run lock in these members (ttl None: the default)."""
        found = {"dr_lock_store": "etcd", "dr_lock_etcd_endpoints": self.endpoints}
        return dict(found, dr_lock_etcd_ttl=ttl) if ttl is not None else found


def free_cluster(root: Path) -> EtcdCluster:
    """A cluster on PORTS_PER_MEMBER * 3 free ports of the tests' range (lab/ports.py), files under root."""
    width = PORTS_PER_MEMBER * len(REGIONS)
    return EtcdCluster(root, lab_ports.free_port_base(lab_ports.TEST_PORTS[0], lab_ports.TEST_PORTS[1], width))


@contextmanager
def temporary_cluster(prefix: str = "erlmcp-dr-etcd-") -> Iterator[EtcdCluster]:
    """Three running members on free ports of the tests' range, files in a new temporary folder; stopped by PID and
    removed on exit (the tests' and benchmarks' cluster)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = free_cluster(root)
    try:
        up(cluster)
        yield cluster
    finally:
        down(cluster)
        shutil.rmtree(root, ignore_errors=True)


def lab_cluster(cfg: Any) -> EtcdCluster:
    """The default lab's members: DEFAULT_PORT_OFFSET ports after the lab's base, files under <lab>/etcd."""
    return EtcdCluster(cfg.root / "etcd", cfg.port_base + DEFAULT_PORT_OFFSET)


def lab_inventory_vars(cfg: Any) -> dict[str, Any]:
    """The default lab's inventory takes the run lock in etcd once `runbook lab up --etcd` made its members."""
    cluster = lab_cluster(cfg)
    return cluster.inventory_vars(ttl=None) if any(m.data_dir.is_dir() for m in cluster.members) else {}


# ---------------------------------------------------------------- start / stop


def _command(cluster: EtcdCluster, member: EtcdMember) -> list[str]:
    initial = ",".join(f"{m.name}={m.peer_url}" for m in cluster.members)
    return [
        shutil.which(ETCD) or ETCD, "--name", member.name, "--data-dir", str(member.data_dir),
        "--listen-client-urls", member.client_url, "--advertise-client-urls", member.client_url,
        "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
        "--initial-cluster", initial, "--initial-cluster-token", cluster.token,
        "--initial-cluster-state", "existing" if (member.data_dir / "member").is_dir() else "new",
        # Loopback: fast heartbeats, so an election after a member's loss takes about a second.
        "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap",
    ]


def member_pid(member: EtcdMember) -> Optional[int]:
    """The member's etcd PID from its pid file, only if that process is an etcd with this member's data dir."""
    from erlmcp_dr.lab.config import pid_if_running

    return pid_if_running(member.pid_file, lambda argv: str(member.data_dir) in argv)


def start_member(cluster: EtcdCluster, member: EtcdMember) -> int:
    """Start the member if it does not run; its PID."""
    running = member_pid(member)
    if running is not None:
        return running
    for port, what in ((member.client_port, "client"), (member.peer_port, "peer")):
        if not lab_ports.port_free(port):
            raise RuntimeError(lab_ports.describe_busy_port(port, f"the lab's etcd member {member.name} ({what})"))
    member.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(member.log_file, "ab") as log:
        proc = subprocess.Popen(_command(cluster, member), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    member.pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def healthy(member: EtcdMember, timeout: float = 2.0) -> bool:
    """Whether the member answers /health with a leader (a quorum)."""
    try:
        with urllib.request.urlopen(f"{member.client_url}/health", timeout=timeout) as answer:
            return json.loads(answer.read().decode()).get("health") == "true"
    except (OSError, ValueError):
        return False


def up(cluster: EtcdCluster, timeout: float = START_TIMEOUT) -> dict[str, Any]:
    """Start every member that does not run, then wait until each answers healthy."""
    pids = {m.name: start_member(cluster, m) for m in cluster.members}
    try:
        wait_for(lambda: all(healthy(m) for m in cluster.members), timeout, interval=0.2,
                 what="the lab's etcd members healthy")
    except WaitTimeout as exc:
        logs = "; ".join(f"{m.name}: {m.log_file}" for m in cluster.members)
        raise RuntimeError(f"{exc} (their logs: {logs})") from exc
    return {"pids": pids, "endpoints": cluster.endpoints}


def stop_member(member: EtcdMember, timeout: float = STOP_TIMEOUT, kill: bool = False) -> bool:
    """Stop the member by its PID (SIGKILL when kill, as a crash); whether one ran."""
    from erlmcp_dr.lab.config import stop_pid

    pid = member_pid(member)
    if pid is None:
        return False
    if kill:
        os.kill(pid, 9)
        wait_for(lambda: member_pid(member) is None, timeout, interval=0.05, what=f"{member.name} gone")
    else:
        stop_pid(pid, timeout)
    return True


def down(cluster: EtcdCluster, timeout: float = STOP_TIMEOUT) -> list[str]:
    """Stop every member that runs; the names stopped."""
    return [m.name for m in cluster.members if stop_member(m, timeout)]


def status(cluster: EtcdCluster) -> list[dict[str, Any]]:
    return [{"name": m.name, "region": m.region, "endpoint": m.client_url, "pid": member_pid(m),
             "healthy": member_pid(m) is not None and healthy(m, 1.0)} for m in cluster.members]


def delete_keys(cluster: EtcdCluster, prefix: str = "/") -> None:
    """Delete every key under prefix and revoke every lease (the tests' reset between tests)."""
    def post(path: str, payload: dict[str, Any]) -> dict[str, Any]:
        for member in cluster.members:
            try:
                request = urllib.request.Request(f"{member.client_url}/v3/{path}", json.dumps(payload).encode(),
                                                 {"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return json.loads(answer.read().decode())
            except OSError:
                continue
        raise RuntimeError("no etcd member of the lab answered")

    from ansible_collections.erlmcp.dr.plugins.module_utils._lock.etcd import prefix_range

    post("kv/deleterange", prefix_range(prefix))
    for lease in post("lease/leases", {}).get("leases") or []:
        post("kv/lease/revoke", {"ID": lease["ID"]})
