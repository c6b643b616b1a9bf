"""The local lab: a real PostgreSQL 15 primary and two streaming standbys on loopback.

It is the embedded default a new user runs first, and what the integration tests run on.
`up` is idempotent and repairs a half-built lab; `down` stops only the lab's own
postmasters, found by PID through each data directory's postmaster.pid.

Labs are also made by copying: `build_template` builds a lab once and stops it cleanly,
`clone` copies it to a new folder with new ports (a few seconds instead of an initdb and
two base backups). Copies share the template's system identifier: a test that needs a
cluster of its own identity builds one with `reset`.

Redis runs beside it (`redis-a` primary in region a, `redis-b` and `redis-c` replicas), on the
three ports after PostgreSQL's, with a password, `appendonly yes` (multi-part AOF) and RDB
snapshots, as the lab OS user; see the Redis section below. Copies start Redis fresh (an empty
dataset syncs in milliseconds), so templates hold PostgreSQL only.
DNS (Knot: `dns-primary` taking signed RFC 2136 updates, `dns-secondary` fed by NOTIFY + IXFR) serves the
zone `erlmcp.lab.` on the two ports after Redis's; see lab/dns.py. Copies start it only when asked (dns=True).

Standbys read the replication password from a passfile beside their data directory
(`<node home>/.erlmcp-dr.pgpass`, 0600), never from an inline primary_conninfo, which
PostgreSQL prints in its log on every reload that changes it.

Why one file of ~850 lines: PostgreSQL's and Redis's node building share the lab lock, the half-built repair and
the template/copy path, and the life cycle (up, status, down, reset, clone) walks both; the lab's shape and process
helpers are in lab/config.py, the application in lab/app.py, DNS in lab/dns.py, ports in lab/ports.py. Redis's
nodes are the next piece to move out (lab_redis.py) when this file grows.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from erlmcp_dr import paths
from erlmcp_dr.lab import app as lab_app
from erlmcp_dr.lab import app_control as lab_app_control
from erlmcp_dr.lab import bia as lab_bia
from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import etcd as lab_etcd
from erlmcp_dr.lab import pgbackrest as lab_pgbackrest
from erlmcp_dr.lab import ports as lab_ports
from erlmcp_dr.lab import residency as lab_residency
from erlmcp_dr.lab import services as lab_services
from erlmcp_dr.lab.config import (  # noqa: F401  (the lab's shape, also read as lab.X)
    APP_PORT_OFFSET,
    DEFAULT_PORT_BASE,
    DNS_PORT_OFFSET,
    DNS_SERVER_COUNT,
    LAB_DIR_ENV,
    LAB_OS_USER,
    LAB_PASSWORD,
    NODE_NAMES,
    PASSFILE_NAME,
    PORT_BASE_ENV,
    PORTS_PER_LAB,
    REDIS_CONF_NAME,
    REDIS_NAMES,
    REPLICATION_USER,
    SUPERUSER,
    LabConfig,
    LabNode,
    LabRedisNode,
    alive,
    ensure_port_free,
    free_port_base,
    lab_os_user,
    make_owned_dir,
    stop_pid,
    write_private,
)

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import find_bin_dir  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import client as rd  # noqa: E402

CONF_MARKER = "# ---- erlmcp.dr lab settings (rewritten by the lab) ----"
START_TIMEOUT = 60
STREAM_TIMEOUT = 60  # seconds a started lab gets until every standby streams
TEMPLATE_MARKER = "template.json"
REDIS_SERVER = "redis-server"


# ---------------------------------------------------------------- OS user and files


@contextmanager
def _lab_lock(cfg: LabConfig) -> Iterator[None]:
    """One lab command at a time per lab folder (two `up`s racing would build twice)."""
    cfg.root.mkdir(parents=True, exist_ok=True)
    with open(cfg.root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- building nodes


def _lab_settings(node: LabNode) -> str:
    return "\n".join([
        CONF_MARKER,
        "listen_addresses = '127.0.0.1'",
        f"port = {node.port}",
        "unix_socket_directories = ''",
        f"cluster_name = '{node.name}'",
        "wal_level = replica",
        "wal_log_hints = on",
        "wal_keep_size = '512MB'",
        "max_wal_senders = 10",
        "hot_standby = on",
        "hot_standby_feedback = on",
        "wal_receiver_status_interval = 1s",
        "wal_retrieve_retry_interval = 500ms",
        "shared_buffers = '32MB'",
        # Dynamic shared memory in the data directory (pg_dynshmem/), not /dev/shm: the lab and its tests kill
        # postmasters with -9, and each one left its segments in /dev/shm for good (2.3 GB on one test machine).
        "dynamic_shared_memory_type = mmap",
        "max_connections = 50",
        "fsync = on",
        "log_line_prefix = '%m [%p] %q%u@%d '",
        *lab_pgbackrest.node_settings(node),  # WAL archive into the lab's pgBackRest repository
        "",
    ])


def _write_node_conf(node: LabNode) -> None:
    server = node.server()
    base = (server.read_file("postgresql.conf") or "").split(CONF_MARKER)[0].rstrip("\n")
    server.write_file("postgresql.conf", base + "\n\n" + _lab_settings(node))
    server.write_file("pg_hba.conf", "\n".join([
        "# erlmcp.dr lab: TCP on loopback only, passwords everywhere",
        "host all all 127.0.0.1/32 scram-sha-256",
        "host replication all 127.0.0.1/32 scram-sha-256",
        "",
    ]))


def _start(node: LabNode) -> None:
    server = node.server()
    if server.is_running():
        return
    server.wait_killed_postmaster_gone(START_TIMEOUT)
    ensure_port_free(node.port, node.name)
    server.start(timeout=START_TIMEOUT)


def _init_primary(node: LabNode) -> None:
    _prepare_empty(node)
    pwfile = node.home / "initdb.pw"
    write_private(pwfile, LAB_PASSWORD + "\n")
    try:
        node.server().run("initdb", ["-D", str(node.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                                     "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"], timeout=120)
    finally:
        pwfile.unlink(missing_ok=True)
    _write_node_conf(node)
    _write_passfile(node)
    _start(node)
    with pg.connect(node.conn_params()) as conn:
        conn.execute(f"CREATE ROLE {REPLICATION_USER} LOGIN REPLICATION PASSWORD '{LAB_PASSWORD}'")
    node.building_marker.unlink(missing_ok=True)


def make_synchronous(cfg: LabConfig, timeout: float = STREAM_TIMEOUT) -> None:
    """Every node asks for one synchronous standby, any of the others (`ANY 1 (*)`; a standby applies it once
    promoted); returns once each standby of the running primary is synchronous (quorum)."""
    for node in cfg.nodes:
        with pg.connect(node.conn_params()) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (*)'")
            conn.execute("SELECT pg_reload_conf()")
    primary = _running_primary(cfg)
    if primary is None:
        raise RuntimeError(f"no running primary in {cfg.root}")

    def quorum() -> bool:
        with pg.connect(primary.conn_params()) as conn:
            states = [row["sync_state"] for row in pg.query_all(conn, "SELECT sync_state FROM pg_stat_replication")]
        return states == ["quorum"] * (len(cfg.nodes) - 1)

    wait_for(quorum, timeout, interval=0.02, what=f"{primary.name}'s standbys synchronous (quorum)")


def _init_standby(node: LabNode, upstream: LabNode) -> None:
    _prepare_empty(node)
    _write_passfile(node)
    node.server().run(
        "pg_basebackup",
        ["-h", "127.0.0.1", "-p", str(upstream.port), "-U", REPLICATION_USER, "-D", str(node.data_dir),
         "-X", "stream", "--checkpoint=fast", "--no-password"],
        env={"PGPASSFILE": str(node.passfile)}, timeout=300,
    )
    _make_standby_of(node, upstream)
    _start(node)
    node.building_marker.unlink(missing_ok=True)


def _make_standby_of(node: LabNode, upstream: LabNode) -> None:
    """Lab settings, passfile, primary_conninfo (no password in it) and standby.signal, server stopped."""
    _write_node_conf(node)
    _write_passfile(node)
    server = node.server()
    server.set_auto_conf({"primary_conninfo": standby_conninfo(node, upstream)})
    server.write_standby_signal()


def standby_conninfo(node: LabNode, upstream: LabNode) -> str:
    """What `node` streams from `upstream` with: the password comes from the node's passfile."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import conninfo

    return conninfo(host="127.0.0.1", port=upstream.port, user=REPLICATION_USER, passfile=str(node.passfile),
                    application_name=node.name)


def _drop_inline_password(node: LabNode) -> None:
    """A stopped standby of a lab built before passfiles: its password moves from primary_conninfo to the passfile."""
    server = node.server()
    current = server.auto_conf_setting("primary_conninfo") or ""
    fields = _conninfo_fields(current)
    if "password" not in fields:
        return
    del fields["password"]
    fields["passfile"] = str(node.passfile)
    _write_passfile(node)
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import conninfo

    server.set_auto_conf({"primary_conninfo": conninfo(**fields)})


def _conninfo_fields(text: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    return {key: str(value) for key, value in conninfo_to_dict(text).items()} if text.strip() else {}


def _write_passfile(node: LabNode) -> None:
    """One line for replication connections to any lab port, so copies of the lab keep working."""
    write_private(node.passfile, f"127.0.0.1:*:replication:{REPLICATION_USER}:{_pgpass_field(LAB_PASSWORD)}\n")


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _prepare_empty(node: LabNode) -> None:
    """A fresh, empty data directory owned by the lab user, marked as being built.

    A node left half-built by an earlier `lab up` (its `building` marker still there) may have a server that
    did start: it is stopped before its folder goes, so the rebuild does not fail the same way again."""
    if node.building_marker.exists() and (node.data_dir / "postmaster.pid").exists():
        node.server().stop(mode="immediate", timeout=START_TIMEOUT)
    if node.home.exists():
        shutil.rmtree(node.home)
    make_owned_dir(node.home)
    node.building_marker.write_text("")
    make_owned_dir(node.data_dir)


# ---------------------------------------------------------------- up / status / down


def up(cfg: LabConfig, etcd: bool = False) -> dict[str, Any]:
    """Build what is missing, start what is stopped, never start a second primary. etcd=True also starts three
    etcd members (lab/etcd.py), and the inventory then takes the run lock in them."""
    with _lab_lock(cfg):
        _check_config(cfg)
        make_owned_dir(cfg.root, 0o755)
        make_owned_dir(cfg.root / "pg", 0o755)
        warnings = _bring_up(cfg)
        warnings += lab_pgbackrest.up(cfg, _running_primary(cfg) or cfg.nodes[0])  # the repository, its stanza
        _bring_up_redis(cfg)
        lab_dns.up(cfg)
        if etcd:
            lab_etcd.up(lab_etcd.lab_cluster(cfg))
        (cfg.root / "app").mkdir(exist_ok=True)
        lab_app.up(cfg, status(cfg))  # the application, one instance per region (docs/app.md)
        # What runbooks run against by default outside a checkout (paths.default_inventory()).
        inventory_path = write_inventory(cfg, paths.lab_inventory(cfg.root))
    if lab_ports.in_ephemeral_range(cfg.port_base, PORTS_PER_LAB):
        low, high = lab_ports.ephemeral_range()
        warnings.append(f"the lab's ports {cfg.port_base}-{cfg.port_base + PORTS_PER_LAB - 1} lie in the kernel's "
                        f"ephemeral port range {low}-{high}: an outgoing connection can take one and block a "
                        f"restart; move the lab below {low} ({PORT_BASE_ENV}=<base> runbook lab reset, then up)")
    result = status(cfg)
    result["warnings"] = warnings + result["warnings"]
    result["inventory"] = str(inventory_path)
    return result


def _check_config(cfg: LabConfig) -> None:
    recorded = cfg.root / "lab.json"
    if recorded.exists():
        previous = json.loads(recorded.read_text())
        if previous.get("port_base") != cfg.port_base:
            raise RuntimeError(
                f"the lab in {cfg.root} was made with port base {previous.get('port_base')}, not {cfg.port_base}; "
                f"run `runbook lab reset` or set {PORT_BASE_ENV}"
            )
    else:
        cfg.root.mkdir(parents=True, exist_ok=True)
        recorded.write_text(json.dumps({"port_base": cfg.port_base, "nodes": [n.name for n in cfg.nodes]}) + "\n")


def _usable(node: LabNode) -> bool:
    return (node.data_dir / "PG_VERSION").is_file() and not node.building_marker.exists()


def _bring_up(cfg: LabConfig) -> list[str]:
    nodes = cfg.nodes
    if not any(_usable(n) for n in nodes):
        _init_primary(nodes[0])
    warnings = _start_primary(cfg)
    for node in nodes:
        if _usable(node) and node.server().is_standby_configured():
            if not node.server().is_running():
                _drop_inline_password(node)
            _start(node)
    for node in nodes:
        if not _usable(node):
            upstream = _running_primary(cfg, exclude=node.name)
            if upstream is None:
                raise RuntimeError(f"cannot rebuild {node.name}: no running primary in the lab to copy from")
            _init_standby(node, upstream)
    return warnings


def _start_primary(cfg: LabConfig) -> list[str]:
    """Start the primary if it is down; a stopped former primary stays down (no second primary)."""
    candidates = [n for n in cfg.nodes if _usable(n) and not n.server().is_standby_configured()]
    running = _running_primary(cfg)
    if running is None and candidates:
        # After a failover two data directories may lack standby.signal: the newest timeline wins.
        running = max(candidates, key=_checkpoint_timeline)
        _start(running)
    return [
        f"{node.name} is a former primary and was left stopped (starting it would make a second primary); "
        f"run `runbook run database_rejoin -e node={node.name}` to bring it back as a standby"
        for node in candidates
        if node != running and not node.server().is_running()
    ]


def _checkpoint_timeline(node: LabNode) -> int:
    return int(node.server().controldata().get("Latest checkpoint's TimeLineID", "0"))


def _running_primary(cfg: LabConfig, exclude: str = "") -> LabNode | None:
    for node in cfg.nodes:
        if node.name == exclude or not _usable(node) or not node.server().is_running():
            continue
        conn, _ = pg.try_connect(node.conn_params())
        if conn is None:
            continue
        with conn:
            if not pg.node_state(conn)["in_recovery"]:
                return node
    return None


def status(cfg: LabConfig) -> dict[str, Any]:
    """Each node's role, timeline, LSN and lag, as seen right now."""
    rows = [_node_status(node) for node in cfg.nodes]
    primaries = [r for r in rows if r["role"] == "primary"]
    _add_lag(cfg, rows, primaries)
    warnings = []
    if len(primaries) > 1:
        warnings.append("more than one primary: " + ", ".join(r["name"] for r in primaries))
    exists = any(r["state"] != "missing" for r in rows)
    redis_rows = redis_status(cfg)
    _add_redis_lag(redis_rows)
    redis_primaries = [r["name"] for r in redis_rows if r["role"] == "primary"]
    if len(redis_primaries) > 1:
        warnings.append("more than one Redis primary: " + ", ".join(redis_primaries))
    redis_ok = len(redis_primaries) == 1 and all(r["state"] == "running" and not r["error"] for r in redis_rows)
    app_rows = lab_app.status(cfg)
    dns_rows = lab_dns.status(cfg)  # a copy made without DNS (dns=False) has none: that is not a fault
    dns_ok = all(r["state"] == "missing" for r in dns_rows) or lab_dns.ok(dns_rows)
    return {
        "ok": exists and len(primaries) == 1 and all(r["state"] == "running" for r in rows) and redis_ok
        and lab_app.ok(app_rows) and dns_ok,
        "root": str(cfg.root),
        "port_base": cfg.port_base,
        "primary": primaries[0]["name"] if len(primaries) == 1 else None,
        "nodes": rows,
        "redis_primary": redis_primaries[0] if len(redis_primaries) == 1 else None,
        "redis": redis_rows,
        "app": app_rows,
        "dns": dns_rows,
        "warnings": warnings,
    }


def _node_status(node: LabNode) -> dict[str, Any]:
    row: dict[str, Any] = {"name": node.name, "region": node.region, "port": node.port, "data_dir": str(node.data_dir),
                           "state": "missing", "pid": None, "role": None, "timeline": None, "lsn": None,
                           "upstream": None, "lag_bytes": None, "lag_seconds": None, "error": None}
    if not _usable(node):
        return row
    row.update(node.server().status())
    if row["state"] != "running":
        row["role"] = "standby" if node.server().is_standby_configured() else "primary (stopped)"
        return row
    conn, error = pg.try_connect(node.conn_params())
    if conn is None:
        row["error"] = error
        return row
    with conn:
        state = pg.node_state(conn)
    receiver = state["wal_receiver"] or {}
    row.update(role=state["role"], timeline=state["timeline"], lsn=state["position_lsn"],
               upstream=f"{receiver['sender_host']}:{receiver['sender_port']}" if receiver.get("sender_port") else None,
               replay_paused=state["replay_paused"])
    return row


def _add_lag(cfg: LabConfig, rows: list[dict[str, Any]], primaries: list[dict[str, Any]]) -> None:
    if len(primaries) != 1:
        return
    conn, _ = pg.try_connect(cfg.node(primaries[0]["name"]).conn_params())
    if conn is None:
        return
    with conn:
        stats = {s["application_name"]: s for s in pg.replication_stats(conn)}
    for row in rows:
        stat = stats.get(row["name"])
        if stat:
            row["lag_bytes"] = stat["lag_bytes"]
            row["lag_seconds"] = stat["replay_lag_seconds"]
            row["sync_state"] = stat["sync_state"]


def down(cfg: LabConfig, timeout: float = 30.0) -> dict[str, Any]:
    """Stop the lab's postmasters by PID (fast shutdown, escalating only past the deadline)."""
    stopped, not_running = [], []
    with _lab_lock(cfg):
        services_stopped, _ = lab_services.down(cfg, timeout)  # service_recovery's services (lab/services.py)
        app_stopped, app_not_running = lab_app.down(cfg, timeout)  # the application first: it uses the others
        for node in cfg.nodes:
            pid = _lab_postmaster_pid(node)
            if pid is None:
                not_running.append(node.name)
                continue
            stop_pid(pid, timeout)
            stopped.append(node.name)
        redis_stopped, redis_not_running = _down_redis(cfg, timeout)
        dns_stopped, dns_not_running = lab_dns.down(cfg, timeout)
        stopped += lab_pgbackrest.down_scratch(cfg, timeout)  # pg_restore's scratch instances, when left running
        lab_etcd.down(lab_etcd.lab_cluster(cfg), timeout)
    return {"ok": True, "root": str(cfg.root), "stopped": stopped, "not_running": not_running,
            "redis_stopped": redis_stopped, "redis_not_running": redis_not_running,
            "app_stopped": app_stopped, "app_not_running": app_not_running,
            "dns_stopped": dns_stopped, "dns_not_running": dns_not_running, "services_stopped": services_stopped}


def _lab_postmaster_pid(node: LabNode) -> int | None:
    """The PID in postmaster.pid, only if that process is a postgres serving this data directory."""
    try:
        pid = int((node.data_dir / "postmaster.pid").read_text().splitlines()[0])
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (OSError, ValueError, IndexError):
        return None
    return pid if os.path.realpath(cwd) == os.path.realpath(node.data_dir) else None


def reset(cfg: LabConfig) -> dict[str, Any]:
    """Stop and delete the lab, then build it anew: pg-a primary, pg-b and pg-c streaming."""
    down(cfg)
    if cfg.root.exists():
        shutil.rmtree(cfg.root)
    return up(cfg)


# ---------------------------------------------------------------- Redis


def _redis_settings(node: LabRedisNode, primary: LabRedisNode | None) -> str:
    """The node's redis.conf: loopback, a password, AOF (multi-part, in appenddirname) and RDB snapshots."""
    lines = [
        "# erlmcp.dr lab Redis node (written once; the modules may CONFIG REWRITE it)",
        "bind 127.0.0.1",
        "protected-mode yes",
        f"port {node.port}",
        "daemonize yes",
        f"pidfile {node.pid_file}",
        f"logfile {node.log_file}",
        f"dir {node.data_dir}",
        "dbfilename dump.rdb",
        "appendonly yes",
        "appenddirname appendonlydir",
        "appendfsync everysec",
        "save 3600 1 300 100 60 10000",
        f"requirepass {LAB_PASSWORD}",
        f"masterauth {LAB_PASSWORD}",
        # a full sync starts at once (the default waits 5 s for more replicas to join the same transfer)
        "repl-diskless-sync-delay 0",
        "maxmemory 64mb",
        "maxmemory-policy noeviction",
    ]
    if primary is not None:
        lines.append(f"replicaof 127.0.0.1 {primary.port}")
    return "\n".join(lines) + "\n"


def _redis_usable(node: LabRedisNode) -> bool:
    return node.conf_file.is_file() and node.data_dir.is_dir()


def _init_redis(node: LabRedisNode, primary: LabRedisNode | None) -> None:
    """A new node: empty data dir, its config (0600: it holds the password), not started."""
    if node.home.exists():
        shutil.rmtree(node.home)
    make_owned_dir(node.home)
    make_owned_dir(node.data_dir)
    write_private(node.conf_file, _redis_settings(node, primary))


def _bring_up_redis(cfg: LabConfig, timeout: float = START_TIMEOUT) -> None:
    """Create the Redis nodes that are missing (redis-a primary, the others its replicas), start those stopped.

    A node that exists keeps its config: after a promotion it says whom it follows.
    """
    make_owned_dir(cfg.root / "redis", 0o755)
    nodes = cfg.redis_nodes
    for node in nodes:
        if not _redis_usable(node):
            _init_redis(node, None if node == nodes[0] else nodes[0])
    for node in nodes:
        _start_redis(node, timeout)


def _start_redis(node: LabRedisNode, timeout: float) -> None:
    if _lab_redis_pid(node) is not None:
        return
    if shutil.which(REDIS_SERVER) is None:
        raise RuntimeError(f"{REDIS_SERVER} is not installed (the lab runs Redis beside PostgreSQL): run "
                           f"scripts/setup.sh, which installs Debian's redis-server, or apt-get install redis-server")
    node.pid_file.unlink(missing_ok=True)
    ensure_port_free(node.port, node.name)
    user = lab_os_user()
    # Not a shell, not the caller's identity: redis-server runs as the lab OS user and daemonizes itself.
    # umask 077: what it writes (CONFIG REWRITE's redis.conf with the password, the RDB, the AOF) is its own only.
    subprocess.run([REDIS_SERVER, str(node.conf_file)], check=True, capture_output=True, timeout=timeout, umask=0o077,
                   user=user.pw_uid if os.geteuid() == 0 else None, group=user.pw_gid if os.geteuid() == 0 else None)

    def answering() -> bool:
        client, _error, kind = rd.try_connect(node.conn_params())
        if client is None:
            return kind not in ("refused", "timeout", "other")
        with client:
            return not client.info("persistence").get("loading")

    try:
        wait_for(answering, timeout, interval=0.05, what=f"{node.name} answering on port {node.port}")
    except WaitTimeout as exc:
        tail = node.log_file.read_text(errors="replace")[-2000:] if node.log_file.exists() else "(no log)"
        raise WaitTimeout(f"{exc} (START_TIMEOUT); its log {node.log_file} ends:\n{tail}", exc.last) from None


def _lab_redis_pid(node: LabRedisNode) -> int | None:
    """The PID in the node's pid file, only if that process is a redis-server working in this node's data dir."""
    try:
        pid = int(node.pid_file.read_text().split()[0])
        cwd = os.readlink(f"/proc/{pid}/cwd")
        with open(f"/proc/{pid}/comm") as handle:
            comm = handle.read().strip()
    except (OSError, ValueError, IndexError):
        return None
    if not comm.startswith("redis-server") or not alive(pid):
        return None
    return pid if os.path.realpath(cwd) == os.path.realpath(node.data_dir) else None


def _down_redis(cfg: LabConfig, timeout: float) -> tuple[list[str], list[str]]:
    stopped, not_running = [], []
    for node in cfg.redis_nodes:
        pid = _lab_redis_pid(node)
        if pid is None:
            not_running.append(node.name)
            continue
        stop_pid(pid, timeout)  # SIGINT: Redis shuts down as on SHUTDOWN (fsyncs the AOF, saves the RDB)
        stopped.append(node.name)
    return stopped, not_running


def redis_status(cfg: LabConfig) -> list[dict[str, Any]]:
    """Each Redis node's state, role, replication offset, link status and keys, as seen right now."""
    return [_redis_node_status(node) for node in cfg.redis_nodes]


def _redis_node_status(node: LabRedisNode) -> dict[str, Any]:
    row: dict[str, Any] = {"name": node.name, "region": node.region, "port": node.port,
                           "data_dir": str(node.data_dir), "state": "missing", "pid": None, "role": None,
                           "offset": None, "upstream": None, "link": None, "lag_bytes": None, "keys": None,
                           "aof": None, "error": None}
    if not _redis_usable(node):
        return row
    row["pid"] = _lab_redis_pid(node)
    if row["pid"] is None:
        row["state"] = "stopped"
        return row
    row["state"] = "running"
    client, error, _kind = rd.try_connect(node.conn_params())
    if client is None:
        row["error"] = error
        return row
    with client:
        facts = rd.node_facts(client.info("all"))
    row.update(role=facts["role"], offset=facts["repl_offset"], keys=facts["total_keys"],
               aof=facts["persistence"]["aof_enabled"])
    if facts["role"] == "replica":
        row.update(upstream=f"{facts['upstream_host']}:{facts['upstream_port']}", link=facts["link_status"])
    else:
        online = [r for r in facts["replicas"] if r["state"] == "online"]
        row["link"] = f"{len(online)} replica(s) online"
    return row


def _add_redis_lag(rows: list[dict[str, Any]]) -> None:
    primaries = [r for r in rows if r["role"] == "primary"]
    if len(primaries) != 1:
        return
    for row in rows:
        if row["role"] == "replica" and row["offset"] is not None:
            row["lag_bytes"] = max(primaries[0]["offset"] - row["offset"], 0)


def wait_redis_linked(cfg: LabConfig, timeout: float = STREAM_TIMEOUT) -> float:
    """Poll until the Redis primary (redis-a) sees every other node online and each replica's link is up."""
    primary, replicas = cfg.redis_nodes[0], cfg.redis_nodes[1:]

    def linked() -> dict[str, Any] | None:
        rows = {row["name"]: row for row in redis_status(cfg)}
        if rows[primary.name]["role"] != "primary":
            return None
        if any(rows[r.name]["link"] != "up" or rows[r.name]["upstream"] != f"127.0.0.1:{primary.port}"
               for r in replicas):
            return None
        return rows if rows[primary.name]["link"] == f"{len(replicas)} replica(s) online" else None

    try:
        _, waited = wait_for(linked, timeout, interval=0.05, what=f"every Redis replica of {cfg.root} linked")
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}; Redis nodes: {redis_status(cfg)} (STREAM_TIMEOUT is the timeout)",
                          exc.last) from None
    return waited


# ---------------------------------------------------------------- templates and copies


def build_template(cfg: LabConfig, timeout: float = STREAM_TIMEOUT) -> dict[str, Any]:
    """Build a lab to copy from (see clone): fresh, every standby caught up, then stopped cleanly."""
    reset(cfg)
    wait_streaming(cfg, timeout, caught_up=True)
    with _lab_lock(cfg):
        for node in cfg.nodes:  # the primary first: its walsenders hand its last WAL to the standbys
            node.server().stop(timeout=START_TIMEOUT)
        _down_redis(cfg, START_TIMEOUT)  # copies start Redis fresh: the template holds PostgreSQL only
        lab_app.down(cfg, START_TIMEOUT)
        lab_dns.down(cfg, START_TIMEOUT)  # and DNS, when asked for (clone(dns=True))
        states = {node.name: node.server().controldata().get("Database cluster state") for node in cfg.nodes}
        if any(state not in ("shut down", "shut down in recovery") for state in states.values()):
            raise RuntimeError(f"the template in {cfg.root} did not shut down cleanly: {states}")
        record = {"port_base": cfg.port_base, "primary": cfg.nodes[0].name,
                  "system_identifier": cfg.nodes[0].server().controldata()["Database system identifier"]}
        (cfg.root / TEMPLATE_MARKER).write_text(json.dumps(record) + "\n")
    return dict(record, root=str(cfg.root))


def clone(template: LabConfig, cfg: LabConfig, timeout: float = STREAM_TIMEOUT, *, app: bool = False,
          dns: bool = False) -> dict[str, Any]:
    """A new lab in cfg.root (empty or missing) copied from a template built by build_template.

    Each node gets cfg's port, its own passfile and a primary_conninfo naming the copy's
    primary; the copy is started and returned (as status()) once every standby streams.
    It shares the template's system identifier. app=True also starts the application (lab_app.up), dns=True
    the lab's DNS servers (a new zone).
    """
    record = _template_record(template)
    with _lab_lock(cfg):
        _check_empty(cfg)
        make_owned_dir(cfg.root, 0o755)
        subprocess.run(["cp", "-a", "--reflink=auto", str(template.root / "pg"), str(cfg.root / "pg")],
                       check=True, capture_output=True, timeout=300)
        _check_config(cfg)  # records cfg's port base in lab.json
        primary = cfg.node(record["primary"])
        for node in cfg.nodes:
            node.log_file.unlink(missing_ok=True)  # the template's log is not this lab's
            if node == primary:
                _write_node_conf(node)
                _write_passfile(node)
            else:
                _make_standby_of(node, primary)
        lab_pgbackrest.clone(template, cfg, primary)  # the copy archives into a repository of its own
        (cfg.root / "app").mkdir(exist_ok=True)
        for node in cfg.nodes:
            _start(node)
        _bring_up_redis(cfg)
        if dns:
            lab_dns.up(cfg)
    wait_streaming(cfg, timeout)
    if app:
        lab_app.up(cfg, status(cfg))
    return status(cfg)


def _template_record(template: LabConfig) -> dict[str, Any]:
    marker = template.root / TEMPLATE_MARKER
    if not marker.is_file():
        raise RuntimeError(f"{template.root} is not a lab template (no {TEMPLATE_MARKER}); build one with "
                           f"lab.build_template(LabConfig(root=...))")
    running = [node.name for node in template.nodes if _lab_postmaster_pid(node) is not None]
    running += [node.name for node in template.redis_nodes if _lab_redis_pid(node) is not None]
    running += [srv.name for srv in lab_dns.servers(template) if lab_dns.lab_knot_pid(srv) is not None]
    if running:
        raise RuntimeError(f"the lab template in {template.root} is running ({', '.join(running)}); a copy of a "
                           f"running cluster is not consistent: stop it with lab.down() or build it anew")
    return json.loads(marker.read_text())


def _check_empty(cfg: LabConfig) -> None:
    found = sorted(p.name for p in cfg.root.iterdir() if p.name != ".lock")
    if found:
        raise RuntimeError(f"cannot copy a lab into {cfg.root}: it holds {', '.join(found)}, expected an empty "
                           f"folder (choose another root, or remove it with `runbook lab down` and rm)")


def wait_streaming(cfg: LabConfig, timeout: float = STREAM_TIMEOUT, caught_up: bool = False) -> float:
    """Poll until every other node streams from the lab's primary (and, if caught_up, has replayed
    all of its WAL), then until every Redis replica is linked to redis-a; returns the seconds waited.
    Raises WaitTimeout with what was last seen."""
    standbys = {node.name for node in cfg.nodes[1:]}

    def streaming() -> dict[str, Any] | None:
        seen = _replication_view(cfg.nodes[0])
        rows = {name: row for name, row in seen.get("standbys", {}).items() if row["state"] == "streaming"}
        if set(rows) != standbys:
            return None
        if caught_up and any(row["replay_lsn"] != seen["current_lsn"] for row in rows.values()):
            return None
        return seen

    try:
        _, waited = wait_for(streaming, timeout, interval=0.1, what=f"every standby of {cfg.root} streaming")
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}; the primary {cfg.nodes[0].name} saw {_replication_view(cfg.nodes[0])} "
                          f"(STREAM_TIMEOUT is the timeout)", exc.last) from None
    return waited + wait_redis_linked(cfg, timeout)


def _replication_view(primary: LabNode) -> dict[str, Any]:
    conn, error = pg.try_connect(primary.conn_params())
    if conn is None:
        return {"error": error}
    with conn:
        rows = conn.execute("SELECT application_name, state, replay_lsn::text AS replay_lsn "
                            "FROM pg_stat_replication").fetchall()
        current = conn.execute("SELECT pg_current_wal_lsn()::text AS lsn").fetchone()["lsn"]
    return {"current_lsn": current, "standbys": {row["application_name"]: row for row in rows}}


# ---------------------------------------------------------------- inventory and display


def inventory(cfg: LabConfig, lab_dir_expr: str | None = None, *, own_lock_dir: bool = False) -> dict[str, Any]:
    """The Ansible inventory for this lab; lab_dir_expr replaces the absolute lab path (shipped file).

    The shipped file says "{{ playbook_dir }}/../.lab": playbook_dir is defined for every host,
    implicit localhost included (inventory_dir is not), and playbooks/ sits beside .lab/.
    own_lock_dir sets dr_lock_dir to <lab root>/locks: for the tests' copies of one template,
    which share a system identifier (the lock's key) yet are separate clusters. The shipped
    inventory leaves it out, so the CLI and plain ansible-playbook share the default lock dir.
    """
    root = lab_dir_expr or str(cfg.root)
    hosts = {
        node.name: {
            "pg_port": node.port,
            "pg_data_dir": f"{root}/pg/{node.name}/data",
            "pg_log_file": f"{root}/pg/{node.name}/postgres.log",
            "dr_region": node.region,
        }
        for node in cfg.nodes
    }
    return {"all": {"children": {
        "postgres": {
            "hosts": hosts,
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                "pg_host": "127.0.0.1",
                "pg_bin_dir": find_bin_dir(),
            },
        },
        "redis": {
            "hosts": {
                node.name: {
                    "redis_port": node.port,
                    "redis_data_dir": f"{root}/redis/{node.name}/data",
                    "redis_start_command": [REDIS_SERVER, f"{root}/redis/{node.name}/{REDIS_CONF_NAME}"],
                    "dr_region": node.region,
                }
                for node in cfg.redis_nodes
            },
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                "redis_host": "127.0.0.1",
                "redis_backup_dir": f"{root}/redis/backups",  # one store: a replica's backup restores into the primary
            },
        },
        "dns": lab_dns.inventory_group(cfg),
        **{f"region_{node.region}": {"hosts": {node.name: {}, redis.name: {}}}
           for node, redis in zip(cfg.nodes, cfg.redis_nodes, strict=True)},
        "app": lab_app_control.with_controls(lab_app.inventory_group(cfg), cfg, root),  # stop/start: lab/app_control.py
        "services": lab_services.inventory_group(cfg, root),  # the service_recovery runbook's (lab/services.py)
    }, "vars": {
        # Credentials sit in `all`: the runbooks' first play runs on the controller (localhost).
        "pg_login_user": SUPERUSER,
        "pg_login_password": LAB_PASSWORD,
        "pg_login_db": "postgres",
        "pg_replication_user": REPLICATION_USER,
        "pg_replication_password": LAB_PASSWORD,
        "dr_primary_of_record": cfg.nodes[0].name,
        "redis_password": LAB_PASSWORD,
        "dr_app_config_path": f"{root}/app/database.json",
        **lab_dns.inventory_vars(),
        **lab_app.notify_vars(cfg),
        "dr_app_redis_config_path": f"{root}/app/redis.json",
        **lab_bia.inventory_vars(),  # the BIA example `runbook bia` reads (lab/bia.py)
        **lab_residency.inventory_vars(),  # jurisdictions and dataset classes: the residency guard's data
        **lab_pgbackrest.inventory_vars(root),  # the repository pg_backup and pg_restore drive
        **({"dr_lock_dir": f"{root}/locks"} if own_lock_dir else {}),
        **lab_etcd.lab_inventory_vars(cfg),
    }}}


def write_inventory(cfg: LabConfig, path: Path, *, own_lock_dir: bool = False) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + yaml.safe_dump(inventory(cfg, own_lock_dir=own_lock_dir), sort_keys=False))
    return path


def format_status(result: dict[str, Any]) -> str:
    if "nodes" not in result:  # what down() returns
        return f"lab {result['root']}: stopped {', '.join(result['stopped']) or 'nothing'}" + (
            f"; not running: {', '.join(result['not_running'])}" if result["not_running"] else "") + (
            f"; Redis stopped {', '.join(result.get('redis_stopped') or []) or 'nothing'}") + (
            f"; app stopped {', '.join(result.get('app_stopped') or []) or 'nothing'}") + (
            f"; DNS stopped {', '.join(result.get('dns_stopped') or []) or 'nothing'}")
    header = f"{'node':6} {'region':6} {'port':6} {'state':8} {'role':18} {'tl':>3} {'lsn':>12} {'lag':>10}  upstream"
    lines = [f"lab {result['root']} (primary: {result.get('primary') or 'none'})"]
    if result.get("inventory"):
        lines.append(f"inventory {result['inventory']}")
    lines.append(header)
    for row in result["nodes"]:
        lag = "" if row["lag_bytes"] is None else f"{row['lag_bytes']} B"
        lines.append(
            f"{row['name']:6} {row['region']:6} {row['port']:<6} {row['state']:8} {str(row['role'] or '-'):18} "
            f"{str(row['timeline'] or '-'):>3} {str(row['lsn'] or '-'):>12} {lag:>10}  {row['upstream'] or ''}"
        )
        if row.get("error"):
            lines.append(f"       error: {row['error']}")
    lines += _format_redis(result.get("redis") or [])
    lines += lab_app.format_rows(result.get("app") or [])
    lines += lab_dns.format_status(result.get("dns") or [])
    lines += [f"warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(lines)


def _format_redis(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["", f"{'redis':8} {'region':6} {'port':6} {'state':8} {'role':8} {'offset':>10} {'lag':>8} {'keys':>8}"
                 f"  link"]
    for row in rows:
        lag = "" if row["lag_bytes"] is None else f"{row['lag_bytes']} B"
        link = (f"{row['link']} from {row['upstream']}" if row["upstream"] else row["link"]) or ""
        lines.append(
            f"{row['name']:8} {row['region']:6} {row['port']:<6} {row['state']:8} {str(row['role'] or '-'):8} "
            f"{str(row['offset'] if row['offset'] is not None else '-'):>10} {lag:>8} "
            f"{str(row['keys'] if row['keys'] is not None else '-'):>8}  {link}"
        )
        if row.get("error"):
            lines.append(f"         error: {row['error']}")
    return lines
