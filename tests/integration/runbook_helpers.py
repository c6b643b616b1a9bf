"""The one place for the integration tests' helpers (conftest.py re-exports the ones module tests import).

The lab: one template per pytest process (per xdist worker), built on first use, and a copy of
it per lab a test asks for (new_lab, conftest's fresh_lab and shared_lab fixtures).
The runbooks run for real, against a real lab: through the `runbook` console script of
this virtualenv (as a subprocess, like an operator would) or through `erlmcp_dr.run()`;
one module runs through ansible-runner (run_module).
What they did is judged from the outside: lab.status() (roles, timelines, upstreams,
LSNs, postmaster pids), SQL on the nodes, the application's config file and the run folder.
Waiting is always a poll with a deadline (module_utils/_common/wait.wait_for), never a sleep.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from erlmcp_dr import paths
from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg  # noqa: E402

psycopg = pg.psycopg

DEADLINE = 90  # seconds any awaited condition gets: a hang guard, never a timing assertion
CLI_HANG_GUARD = 900  # seconds a whole CLI run gets before the test gives up on it
VENV_BIN = Path(sys.executable).parent
PORTS = lab.lab_ports.TEST_PORTS  # where test labs listen (below the ephemeral range); split between xdist workers
LAB_ATTEMPTS = 3  # a port chosen free can be taken before the server binds it: try new ports


# ---------------------------------------------------------------- labs


def port_range() -> tuple[int, int]:
    """This process's share of PORTS: pytest-xdist workers (gw0, gw1, ...) never pick the same ports."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    width = (PORTS[1] - PORTS[0]) // max(count, 1)
    low = PORTS[0] + width * min(index, count - 1)
    return low, low + width


LAB_DIR_ENV = "ERLMCP_DR_TEST_LAB_DIR"
MEMORY_LAB_DIR = Path("/dev/shm")
MEMORY_LAB_ROOM = 4 * 1024**3  # bytes free that /dev/shm must have: two workers' templates and labs, with room


def lab_parent() -> str | None:
    """Where test labs are made: $ERLMCP_DR_TEST_LAB_DIR, else /dev/shm (memory) when it is there with room, else the
    system's temp folder. Every test copies the template's three data directories (~250 MB): on this machine kind's
    disk one copy took ~5 s under load (about a quarter of the integration run's time), in memory a fraction of that,
    and PostgreSQL's fsyncs cost nothing there. Nothing a test checks depends on the file system: no test crashes the
    operating system, the one failure an fsync guards against."""
    configured = os.environ.get(LAB_DIR_ENV)
    if configured:
        return configured
    try:
        if os.access(MEMORY_LAB_DIR, os.W_OK | os.X_OK) and shutil.disk_usage(MEMORY_LAB_DIR).free > MEMORY_LAB_ROOM:
            return str(MEMORY_LAB_DIR)
    except OSError:
        pass
    return None


def _new_cfg(prefix: str) -> lab.LabConfig:
    """A lab config in a new folder of lab_parent() (not pytest's tmp_path: the servers run as `postgres`,
    who cannot enter root's private pytest folders), on free ports of this process's range."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=lab_parent()))
    return lab.LabConfig(root=root, port_base=lab.free_port_base(*port_range()))


def remove_lab(cfg: lab.LabConfig) -> None:
    """Stop the lab's postmasters by PID and delete its folder."""
    try:
        lab.down(cfg)
    finally:
        shutil.rmtree(cfg.root, ignore_errors=True)


class LabTemplate:
    """The lab every test lab is copied from: built once per process, on first use, removed at the end."""

    def __init__(self) -> None:
        self._cfg: lab.LabConfig | None = None

    def get(self) -> lab.LabConfig:
        if self._cfg is None:
            cfg = _new_cfg("erlmcp-dr-template-")
            try:
                lab.build_template(cfg)
            except BaseException:
                remove_lab(cfg)
                raise
            self._cfg = cfg
            atexit.register(self.remove)  # outside pytest too; remove() is idempotent
        return self._cfg

    def remove(self) -> None:
        cfg, self._cfg = self._cfg, None
        if cfg is not None:
            remove_lab(cfg)


TEMPLATE = LabTemplate()


@contextmanager
def new_lab(*, own_system_identifier: bool = False, app: bool = False, dns: bool = False
            ) -> Iterator[lab.LabConfig]:
    """A new lab (pg-a primary, pg-b and pg-c streaming, inventory written), stopped and removed afterwards.

    A copy of the process's template, so every such lab has the template's system identifier;
    own_system_identifier=True builds one from scratch (initdb), for tests about foreign clusters.
    app=True also starts the application (one instance per region, docs/app.md); a lab built from
    scratch always has it. dns=True also starts the lab's DNS servers (Knot primary and secondary).
    """
    cfg = _started_lab(own_system_identifier, app)
    try:
        if dns:
            lab_dns.up(cfg)
        lab.write_inventory(cfg, inventory_path(cfg), own_lock_dir=True)
        yield cfg
    finally:
        remove_lab(cfg)


def _started_lab(own_system_identifier: bool, app: bool = False) -> lab.LabConfig:
    for attempt in range(1, LAB_ATTEMPTS + 1):
        cfg = _new_cfg("erlmcp-dr-lab-")
        try:
            if own_system_identifier:
                lab.reset(cfg)
                lab.wait_streaming(cfg)
            else:
                lab.clone(TEMPLATE.get(), cfg, app=app)
            return cfg
        except Exception:
            remove_lab(cfg)
            if attempt == LAB_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def inventory_path(cfg: lab.LabConfig) -> Path:
    """The lab's inventory (written by new_lab; sets dr_lock_dir to <lab root>/locks)."""
    return cfg.root / "inventory" / "hosts.yml"


lab_inventory = inventory_path  # the name module tests import from conftest


def inventory_copy(cfg: lab.LabConfig, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the lab's inventory, changed by `change` (which gets the parsed YAML)."""
    data = yaml.safe_load(inventory_path(cfg).read_text())
    change(data)
    path = cfg.root / "inventory-copies" / name / "hosts.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def host_vars(data: dict[str, Any], node: str) -> dict[str, Any]:
    """The host entry of `node` in a parsed lab inventory (to change it in place)."""
    return data["all"]["children"]["postgres"]["hosts"][node]


@contextmanager
def untouched_guard(cfg: lab.LabConfig, who: str) -> Iterator[lab.LabConfig]:
    """Fails on exit if the lab's roles, timelines, upstreams or postmaster pids changed meanwhile."""
    before = topology(cfg)
    yield cfg
    after = topology(cfg)
    assert after == before, f"{who} changed a shared lab, which must stay untouched:\nbefore {before}\nafter  {after}"


# ---------------------------------------------------------------- SQL on the nodes


def conn_params(cfg: lab.LabConfig, node: str, password: str = lab.LAB_PASSWORD) -> dict[str, Any]:
    return dict(cfg.node(node).conn_params(), password=password)


def connect(cfg: lab.LabConfig, node: str, password: str = lab.LAB_PASSWORD):
    return pg.connect(conn_params(cfg, node, password))


def plain_connect(cfg: lab.LabConfig, node: str, password: str = lab.LAB_PASSWORD):
    """A psycopg connection with tuple rows (what erlmcp_dr.probe.WriteProbe.missing_on reads)."""
    return psycopg.connect(autocommit=True, **conn_params(cfg, node, password))


def sql(cfg: lab.LabConfig, node: str, query: str, args: Any = None, *,
        password: str = lab.LAB_PASSWORD) -> list[dict[str, Any]]:
    """Run one statement on a lab node as the lab superuser; rows as dicts."""
    with connect(cfg, node, password) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return [dict(row) for row in cur.fetchall()] if cur.description else []


def node_state(cfg: lab.LabConfig, node: str, password: str = lab.LAB_PASSWORD) -> dict[str, Any]:
    """The node's role, timeline and LSNs (module_utils/_postgres/sql.node_state)."""
    with connect(cfg, node, password) as conn:
        return pg.node_state(conn)


state = node_state  # the name module tests import from conftest


def login_args(cfg: lab.LabConfig, node: str) -> dict[str, Any]:
    """Connection options for a module speaking SQL to one lab node."""
    return {
        "login_host": "127.0.0.1",
        "login_port": cfg.node(node).port,
        "login_user": lab.SUPERUSER,
        "login_password": lab.LAB_PASSWORD,
    }


def run_module(module: str, args: dict[str, Any], check: bool = False, diff: bool = False) -> dict[str, Any]:
    """Run one module on localhost through ansible-runner; returns its result (with 'failed')."""
    import ansible_runner

    with tempfile.TemporaryDirectory(prefix="erlmcp-dr-mod-") as private:
        cmdline = " ".join(flag for flag, on in (("--check", check), ("--diff", diff)) if on)
        runner = ansible_runner.run(
            private_data_dir=private,
            host_pattern="localhost",
            module=module,
            module_args=json.dumps(args),
            inventory="localhost ansible_connection=local ansible_python_interpreter=" + sys.executable,
            cmdline=cmdline or None,
            envvars={"ANSIBLE_COLLECTIONS_PATH": str(paths.collections_path()), "PATH": venv_path()},
            quiet=True,
        )
        for event in runner.events:
            if event.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
                result = dict(event["event_data"]["res"])
                result.setdefault("failed", event["event"] != "runner_on_ok")
                return result
        raise AssertionError(f"{module} produced no result; stdout:\n{runner.stdout.read()}")


def venv_path() -> str:
    """PATH with this interpreter's bin folder first (ansible-runner finds `ansible` on PATH)."""
    return os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", os.defpath)])


WRITE_TABLE = "erlmcp_dr_it_writes"


def write_row(cfg: lab.LabConfig, node: str, note: str, password: str = lab.LAB_PASSWORD) -> None:
    """Commit one row on `node` (raises when the node does not take writes)."""
    with connect(cfg, node, password) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {WRITE_TABLE} (note text, at timestamptz DEFAULT now())")
        conn.execute(f"INSERT INTO {WRITE_TABLE} (note) VALUES (%s)", (note,))


def has_row(cfg: lab.LabConfig, node: str, note: str, password: str = lab.LAB_PASSWORD) -> bool:
    with connect(cfg, node, password) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS t", (WRITE_TABLE,)).fetchone()["t"]
        if not exists:
            return False
        return conn.execute(f"SELECT count(*) AS n FROM {WRITE_TABLE} WHERE note = %s", (note,)).fetchone()["n"] > 0


def takes_no_writes(cfg: lab.LabConfig, node: str) -> str:
    """Why `node` takes no writes ('connection refused: ...' or 'write rejected: ...'); fails if a write commits."""
    try:
        conn = connect(cfg, node)
    except (pg.PgError, psycopg.Error) as exc:
        return f"connection refused: {exc}"
    with conn:
        try:
            conn.execute("SELECT txid_current()")  # assigns a transaction id: impossible on a standby
            conn.execute(f"CREATE TABLE IF NOT EXISTS {WRITE_TABLE} (note text, at timestamptz DEFAULT now())")
            conn.execute(f"INSERT INTO {WRITE_TABLE} (note) VALUES ('must not commit')")
        except psycopg.Error as exc:
            return f"write rejected: {exc}"
    raise AssertionError(f"{node} committed a write; it should be fenced or a standby")


# ---------------------------------------------------------------- lab state


def node_name_at(cfg: lab.LabConfig, endpoint: str | None) -> str | None:
    """'127.0.0.1:PORT' (lab.status's upstream) -> the lab node listening there."""
    if not endpoint:
        return None
    port = int(endpoint.rsplit(":", 1)[1])
    for node in cfg.nodes:
        if node.port == port:
            return node.name
    return endpoint


def topology(cfg: lab.LabConfig, status: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per node: state, role, timeline, upstream node and postmaster pid (no LSNs, which move on their own)."""
    status = status or lab.status(cfg)
    return {
        row["name"]: {
            "state": row["state"],
            "role": row["role"],
            "timeline": row["timeline"],
            "upstream": node_name_at(cfg, row["upstream"]),
            "pid": row["pid"],
            "replay_paused": row.get("replay_paused"),
        }
        for row in status["nodes"]
    }


def lsns(status: dict[str, Any]) -> dict[str, Any]:
    return {row["name"]: row["lsn"] for row in status["nodes"]}


def wait_topology(cfg: lab.LabConfig, want: dict[str, dict[str, Any]], what: str) -> dict[str, dict[str, Any]]:
    """Poll lab.status until every node matches the given fields (e.g. {'pg-a': {'role': 'standby', ...}})."""

    def matches() -> dict[str, dict[str, Any]] | None:
        topo = topology(cfg)
        ok = all(topo[node][key] == value for node, fields in want.items() for key, value in fields.items())
        return topo if ok else None

    try:
        topo, _ = wait_for(matches, DEADLINE, interval=0.2, what=what)
    except Exception as exc:
        raise AssertionError(f"{what}: wanted {want}, last seen {topology(cfg)}") from exc
    return topo


def streaming_from(primary: str, timeline: int) -> dict[str, Any]:
    return {"state": "running", "role": "standby", "upstream": primary, "timeline": timeline}


def primary_on(timeline: int) -> dict[str, Any]:
    return {"state": "running", "role": "primary", "timeline": timeline, "upstream": None}


FRESH = {
    "pg-a": primary_on(1),
    "pg-b": streaming_from("pg-a", 1),
    "pg-c": streaming_from("pg-a", 1),
}


def wal_records(cfg: lab.LabConfig, node: str, start: str, end: str | None = None) -> list[str]:
    """The WAL records in `node`'s pg_wal from `start` (to `end`, else to the end), read with pg_waldump.

    Reading the files leaves the server alone: no connection, no catalog change, no WAL.
    """
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import find_bin_dir

    status = {row["name"]: row for row in lab.status(cfg)["nodes"]}[node]
    command = [str(Path(find_bin_dir()) / "pg_waldump"), "-p", str(cfg.node(node).data_dir / "pg_wal"),
               "-s", start, "-t", str(status["timeline"] or 1)]
    if end:
        command += ["-e", end]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    records = [" ".join(line.split()) for line in out.stdout.splitlines() if line.startswith("rmgr:")]
    return records or [f"(no records; pg_waldump: {out.stderr.strip()})"]


def wait_quiet(cfg: lab.LabConfig) -> dict[str, Any]:
    """Let the cluster stop writing WAL on its own, wait until it has, and return lab.status().

    Two things write WAL on an idle cluster: autovacuum (a fresh cluster's catalogs get
    analyzed within its first minutes), switched off here on the primary (a reload, no
    restart), and the background writer, which logs one Standby/RUNNING_XACTS record up to
    ~15 s after the last real WAL record and then stays put until something writes again.
    So: wait until that record is the last one in the WAL, no autovacuum worker runs, and
    every standby has received everything.
    """
    primary = lab.status(cfg)["primary"]
    assert primary, lab.format_status(lab.status(cfg))
    sql(cfg, primary, "ALTER SYSTEM SET autovacuum = off")
    sql(cfg, primary, "SELECT pg_reload_conf()")

    def quiet() -> dict[str, Any] | None:
        rows = sql(cfg, primary, "SELECT current_setting('autovacuum') AS autovacuum, "
                                 "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker') "
                                 "AS workers, (SELECT redo_lsn::text FROM pg_control_checkpoint()) AS redo")
        if rows[0]["autovacuum"] != "off" or rows[0]["workers"]:
            return None
        status = lab.status(cfg)
        if status["primary"] != primary or len(set(lsns(status).values())) != 1:
            return None
        last = wal_records(cfg, primary, rows[0]["redo"])[-1]
        if not (last.startswith("rmgr: Standby ") and "RUNNING_XACTS" in last):
            return None
        again = lab.status(cfg)  # nothing written while the WAL was read
        return again if lsns(again) == lsns(status) else None

    status, _ = wait_for(quiet, DEADLINE, interval=0.5, what="an idle cluster (no WAL written)")
    return status


def wal_records_between(cfg: lab.LabConfig, node: str, start: str, end: str) -> list[str]:
    """What was written to the WAL between two LSNs (for an assertion's message)."""
    return wal_records(cfg, node, start, end)


# ---------------------------------------------------------------- the CLI


@dataclass
class Cli:
    args: list[str]
    rc: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"`runbook {' '.join(self.args)}` printed no JSON:\n{self}") from exc

    def __str__(self) -> str:
        return f"rc={self.rc}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"


def command_line(pid: int | str) -> bytes:
    """A process's command line as /proc shows it (arguments NUL-separated); b"" when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0")
    except OSError:
        return b""


def runbook_pids(proc: subprocess.Popen) -> set[int]:
    """The `runbook` process `proc` and, when a CLI zygote serves its command (docs/speed-warm.md), the forked
    command doing the work (its run lock names it): both show the same command line."""
    mine = command_line(proc.pid)
    return {proc.pid} | {int(entry.name) for entry in Path("/proc").iterdir()
                         if entry.name.isdigit() and mine and command_line(entry.name) == mine}


def runbook_command() -> list[str]:
    script = VENV_BIN / "runbook"
    if script.exists():
        return [str(script)]
    found = shutil.which("runbook")
    return [found] if found else [sys.executable, "-m", "erlmcp_dr"]


def runbook_cli(*args: str) -> Cli:
    """`runbook ARGS` as an operator would run it (no terminal: stdin is /dev/null)."""
    env = dict(os.environ, PATH=venv_path())
    proc = subprocess.run([*runbook_command(), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env=env, timeout=CLI_HANG_GUARD, check=False)
    return Cli(list(args), proc.returncode, proc.stdout, proc.stderr)


def run_json(*args: str, expect_rc: int) -> tuple[Cli, dict[str, Any]]:
    """`runbook ARGS --json`: checks the exit code, returns the CLI outcome and the result JSON."""
    cli = runbook_cli(*args, "--json")
    assert cli.rc == expect_rc, f"`runbook {' '.join(args)}` exited {cli.rc}, expected {expect_rc}:\n{cli}"
    return cli, cli.json


# ---------------------------------------------------------------- results and run folders


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The run's summary envelope (docs/reports.md) with its system's details beside the envelope's own keys, so
    an assertion reads summary(r)["new_primary"] as well as summary(r)["completed"] (no details key shadows one of
    the envelope's: the producers keep them apart)."""
    envelope = (result.get("facts") or {}).get("summary") or {}
    return {**(envelope.get("details") or {}), **envelope}


def changed_steps(result: dict[str, Any]) -> list[str]:
    return [f"{step['task']} ({step['host']})" for step in result["steps"] if step["changed"]]


def failure_message(result: dict[str, Any]) -> str:
    """The failed steps' messages and the run's error: what an operator reads."""
    parts = [step["message"] for step in result["steps"] if step["failed"] and not step.get("ignored")]
    if result.get("error"):
        parts.append(result["error"])
    return " | ".join(part for part in parts if part)


def step(result: dict[str, Any], task_prefix: str, index: int = 0) -> dict[str, Any]:
    found = [s for s in result["steps"] if s["task"].startswith(task_prefix)]
    assert len(found) > index, f"no step {task_prefix!r} in {[s['task'] for s in result['steps']]}"
    return found[index]


def as_int(value: Any) -> int | None:
    """set_stats publishes templated values: '2' and 2 are the same timeline."""
    return None if value in (None, "") else int(value)


def runs_dir() -> Path:
    return paths.state_home() / "runs"


def run_folders() -> list[Path]:
    root = runs_dir()
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def files_containing(directory: Path, needle: bytes) -> list[str]:
    hits = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            hits.append(str(path.relative_to(directory)))
    return hits


# ---------------------------------------------------------------- Redis on the lab


def redis_client(cfg: lab.LabConfig, node: str, password: str = lab.LAB_PASSWORD, db: int = 0):
    """A redis-py client (decoded strings) to one lab Redis node."""
    import redis

    where = cfg.redis_node(node)
    return redis.Redis(host="127.0.0.1", port=where.port, password=password, db=db, decode_responses=True,
                       socket_connect_timeout=3, socket_timeout=30)


def redis_nodes_arg(cfg: lab.LabConfig) -> list[dict[str, Any]]:
    """The `nodes` option of redis_info for the lab's three Redis nodes."""
    return [{"name": node.name, "host": "127.0.0.1", "port": node.port} for node in cfg.redis_nodes]


def redis_login_args(cfg: lab.LabConfig, node: str) -> dict[str, Any]:
    """Connection options for a module speaking to one lab Redis node."""
    return {"login_host": "127.0.0.1", "login_port": cfg.redis_node(node).port, "login_password": lab.LAB_PASSWORD}


def wait_redis_replicated(cfg: lab.LabConfig) -> None:
    """Poll until every lab Redis replica's offset equals the primary's (redis-a)."""
    def same() -> bool:
        offsets = []
        for node in cfg.redis_nodes:
            with redis_client(cfg, node.name) as client:
                info = client.info("replication")
            offsets.append(info.get("master_repl_offset") if node == cfg.redis_nodes[0] else
                           info.get("slave_repl_offset") if info.get("master_link_status") == "up" else None)
        return None not in offsets and len(set(offsets)) == 1

    wait_for(same, DEADLINE, interval=0.05, what="every Redis replica at the primary's offset")


def closed_port() -> int:
    """A loopback port nothing listens on (the kernel's pick, released at once): connecting is refused.

    Never a lab port plus an offset: the labs' port blocks hold Redis beside PostgreSQL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- DNS (Knot) on its own


@contextmanager
def new_dns_lab() -> Iterator[lab.LabConfig]:
    """The lab's two DNS servers alone (no PostgreSQL, no Redis: the DNS tests need none), on free ports of this
    process's range, with an inventory of the `dns` group and vars at inventory_path(cfg); stopped by PID and
    removed afterwards. Start it once per module and put the zone back with lab_dns.reset_zone between tests."""
    for attempt in range(1, LAB_ATTEMPTS + 1):
        cfg = _new_cfg("erlmcp-dr-dns-")
        cfg.root.rmdir()  # lab_dns.up makes it, owned by the lab OS user
        try:
            lab_dns.up(cfg)
            break
        except Exception:
            remove_dns_lab(cfg)
            if attempt == LAB_ATTEMPTS:
                raise
    try:
        write_dns_inventory(cfg, inventory_path(cfg))
        yield cfg
    finally:
        remove_dns_lab(cfg)


def remove_dns_lab(cfg: lab.LabConfig) -> None:
    try:
        lab_dns.down(cfg)
    finally:
        shutil.rmtree(cfg.root, ignore_errors=True)


def write_dns_inventory(cfg: lab.LabConfig, path: Path) -> Path:
    """The lab inventory's DNS part only (group `dns`, the dns_* vars), with a lock dir of this lab's own."""
    data = {"all": {"children": {"dns": lab_dns.inventory_group(cfg)},
                    "vars": {**lab_dns.inventory_vars(), "dr_lock_dir": f"{cfg.root}/locks"}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def dns_servers_arg(cfg: lab.LabConfig) -> list[dict[str, Any]]:
    """The `servers` option of the dns_* modules for the lab's two servers."""
    return [{"name": srv.name, "host": "127.0.0.1", "port": srv.port} for srv in lab_dns.servers(cfg)]


def dns_args(cfg: lab.LabConfig, **extra: Any) -> dict[str, Any]:
    """dns_record / dns_info options for the lab's zone: the primary, both servers, the lab's TSIG key."""
    primary = lab_dns.servers(cfg)[0]
    return {"zone": lab_dns.ZONE, "server": "127.0.0.1", "port": primary.port, "servers": dns_servers_arg(cfg),
            "tsig_key_name": lab_dns.TSIG_KEY_NAME, "tsig_key_secret": lab_dns.TSIG_SECRET,
            "tsig_algorithm": lab_dns.TSIG_ALGORITHM, **extra}


def dns_answers(cfg: lab.LabConfig, name: str, rdtype: str = "A") -> dict[str, list[str]]:
    """What each lab DNS server answers for name, asked directly."""
    return {srv.name: lab_dns.answers(srv, name, rdtype) for srv in lab_dns.servers(cfg)}


@contextmanager
def lock_held(cfg: lab.LabConfig, key: str, run_id: str, folder: Path) -> Iterator[None]:
    """Another run holding `key` in the lab's lock folder: a live ansible-playbook (tests/fixtures/lock/hold.yml)
    that keeps it until the block ends, whatever the speed of the runs tried meanwhile."""
    signal_file, proceed_file = folder / f"{run_id}.holding", folder / f"{run_id}.proceed"
    env = dict(os.environ, ERLMCP_DR_LOCK_DIR=str(cfg.root / "locks"),
               ANSIBLE_COLLECTIONS_PATH=str(paths.collections_path()))
    playbook = Path(__file__).resolve().parents[1] / "fixtures" / "lock" / "hold.yml"
    hold = subprocess.Popen(
        [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook),
         "-e", f"lock_key={key}", "-e", f"erlmcp_dr_run_id={run_id}",
         "-e", f"signal_file={signal_file}", "-e", f"proceed_file={proceed_file}",
         "-e", f"ansible_python_interpreter={sys.executable}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: signal_file.exists() or hold.poll() is not None, DEADLINE, what="the holder takes the lock")
        assert signal_file.exists(), hold.communicate()[0]
        yield
    finally:
        proceed_file.touch()
        hold.communicate(timeout=DEADLINE)


# ---------------------------------------------------------------- a run killed at a step


KILL_RESULT_PREFIXES = ("ok:", "changed:", "failed:", "fatal:", "skipping:")  # a task's result line (default callback)


def playbook_env() -> dict[str, str]:
    """ansible-playbook's environment for a run started without the CLI: this venv, the collection, plain output."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_COLLECTIONS_PATH=str(paths.collections_path()),
               ANSIBLE_CONFIG=str(paths.collection_root() / "ansible.cfg"))
    env["PATH"] = venv_path()
    return env


def kill_run_tree(pid: int) -> None:
    """SIGKILL the whole run started as `pid` (a session leader), as if its host died: (frozen first, so nothing
    forks meanwhile) every process of its tree, then its process group - ansible-core's workers run in sessions of
    their own (os.setsid), so a signal to the group alone leaves the module in flight running to its end."""
    from erlmcp_dr.guard import kill_tree

    kill_tree(pid)
    with contextlib.suppress(ProcessLookupError):  # the run may have ended meanwhile
        os.killpg(pid, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen, killed: threading.Event) -> None:
    if not killed.is_set():
        killed.set()  # first: whoever sees the run end knows it was killed
        kill_run_tree(proc.pid)


def _kill_when(proc: subprocess.Popen, when: Callable[[], bool], killed: threading.Event,
               trouble: list[str], deadline: float = DEADLINE) -> None:
    """Poll `when` (every 2 ms, until `deadline` seconds) while the run goes on; SIGKILL its group once it holds. A
    probe that raises or never holds is noted in `trouble` (the run is killed all the same: never left running)."""
    try:
        wait_for(lambda: killed.is_set() or proc.poll() is not None or when(), deadline, interval=0.002,
                 what="the kill condition")
    except Exception as exc:  # noqa: BLE001 - reported by the caller's assertion
        trouble.append(f"{type(exc).__name__}: {exc}")
    if proc.poll() is None:
        _kill_group(proc, killed)


def kill_playbook(playbook: str, inventory: Path, extravars: Sequence[str] = (), *, after: str | None = None,
                  when: Callable[[], bool] | None = None) -> list[str]:
    """Run playbooks/<playbook>.yml with ansible-playbook (the controller, in a process group of its own) and
    SIGKILL the whole group once the task whose name contains `after` printed its first result line (a loop: its
    first item), or once `when()` holds (polled while the run goes on). Returns the lines the run printed; fails
    when the run ended before it could be killed."""
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory),
            str(paths.collection_root() / "playbooks" / f"{playbook}.yml")]
    for extravar in extravars:
        argv += ["-e", extravar]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, env=playbook_env(), start_new_session=True)
    killed, trouble = threading.Event(), []
    guard = threading.Timer(CLI_HANG_GUARD, _kill_group, args=(proc, threading.Event()))
    guard.start()
    watcher = threading.Thread(target=_kill_when, args=(proc, when, killed, trouble), daemon=True)
    if when is not None:
        watcher.start()
    seen: list[str] = []
    try:
        in_task = False
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line.rstrip())
            if line.startswith("TASK ["):
                in_task = after is not None and after in line
            elif killed.is_set():
                break
            elif in_task and line.startswith(KILL_RESULT_PREFIXES):
                _kill_group(proc, killed)
                break
        proc.wait()
    finally:
        guard.cancel()
        if watcher.is_alive():
            watcher.join(DEADLINE)
    assert killed.is_set() and not trouble, (
        f"{playbook} ended (rc={proc.returncode}) before it was killed (after={after!r}) or the kill condition "
        f"failed ({trouble}):\n" + "\n".join(seen[-40:]))
    return seen


def kill_cli(args: Sequence[str], when: Callable[[], bool], deadline: float = DEADLINE,
             env: Mapping[str, str] | None = None) -> Cli:
    """`runbook ARGS` (in a process group of its own, `env` added to its environment), SIGKILLed with everything it
    started once `when()` holds (polled until `deadline` seconds: a hang guard)."""
    proc = subprocess.Popen([*runbook_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env=dict(os.environ, PATH=venv_path(), **(env or {})),
                            start_new_session=True)
    killed, trouble = threading.Event(), []
    try:
        _kill_when(proc, when, killed, trouble, deadline)
    finally:
        if proc.poll() is None and not killed.is_set():
            _kill_group(proc, killed)
        stdout, stderr = proc.communicate(timeout=DEADLINE)
    cli = Cli(list(args), proc.returncode, stdout, stderr)
    assert killed.is_set() and not trouble, (
        f"`runbook {' '.join(args)}` ended before it was killed or the kill condition failed ({trouble}):\n{cli}")
    # A warm run's ansible-playbook is a fork of the zygote, outside the killed tree: its run server ends it once it
    # sees the guard gone, and until then a module in flight may still change something. What the test reads next
    # must be the killed run's last word, as the next run's (which ends any leftover before it starts) would be.
    try:
        wait_for(lambda: not marked_run_processes(), DEADLINE, interval=0.02, what="the killed run's processes ending")
    except WaitTimeout as exc:
        raise AssertionError(f"{exc}; still alive:\n{describe_processes(marked_run_processes())}") from exc
    return cli


def describe_processes(pids: Iterable[int]) -> str:
    """A line per process: pid, parent, state (R/S/T/Z...), command line; for a failure message."""
    lines = []
    for pid in pids:
        try:
            status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if ":\t" in line)
        except OSError:
            continue
        argv = command_line(pid).replace(b"\0", b" ").decode(errors="replace")
        lines.append(f"{pid} ppid={status.get('PPid', '?')} state={status.get('State', '?')} {argv[:300]}")
    return "\n".join(lines) or "(none left)"


def marked_run_processes() -> list[int]:
    """The live processes of the runs of this test's state folder, by the guard's own rule (guard.run_processes with
    each run's marker, its private data dir): ansible-playbook and its workers, never a daemon a run started."""
    from erlmcp_dr.guard import NO_ROOT, process_start_time, run_processes
    from erlmcp_dr.runner import private_root

    root = private_root()
    markers = [str(path) for path in root.iterdir() if path.is_dir()] if root.is_dir() else []
    return [pid for marker in markers for pid in run_processes(NO_ROOT, marker)
            if pid != os.getpid() and process_start_time(pid) is not None]


def kill_drill_once(inventory: Path, extravars: Sequence[str],
                    fault_done: Callable[[dict[str, Any]], bool] = lambda fault: bool(fault)) -> dict[str, Any]:
    """`runbook run dr_drill` killed with kill -9 (it and everything it started) once its pending record's fault
    satisfies `fault_done`; returns the pending record it left (what the next drill restores first)."""
    from erlmcp_dr.drill import run as drill

    argv = [*runbook_command(), "run", "dr_drill", "-i", str(inventory), "--yes"]
    for extravar in extravars:
        argv += ["-e", extravar]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PATH=venv_path()), start_new_session=True)
    pending = drill.pending_path(inventory)

    def injected() -> bool:
        try:
            return fault_done(json.loads(pending.read_text()).get("fault") or {})
        except (OSError, ValueError):
            return proc.poll() is not None  # not written yet (or being replaced); a drill that ended is a failure

    try:
        wait_for(injected, CLI_HANG_GUARD, interval=0.01, what="the drill's fault recorded")
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(DEADLINE)
    return json.loads(pending.read_text())
