"""The lab's DNS: a real authoritative Knot DNS primary and secondary on loopback.

`dns-primary` (127.0.0.1:base+6) serves zone `erlmcp.lab.` from a zone file and takes RFC 2136
updates signed with a TSIG key (hmac-sha256); it NOTIFYs `dns-secondary` (127.0.0.1:base+7),
which transfers the zone by IXFR (AXFR the first time). Both run as the lab OS user, each from
its own folder `<lab>/dns/<name>/` (knot.conf, run/ with the pid file and control socket,
storage/ with the zone file and journal, knot.log). `down` stops them by the PID in their pid
file, only if that process is a knotd started with this server's config.

The TSIG secret is public like lab.LAB_PASSWORD: the lab listens on 127.0.0.1 only. Real
inventories keep theirs in vault.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for  # noqa: E402

if TYPE_CHECKING:
    from erlmcp_dr.lab.config import LabConfig

KNOTD = "knotd"
ZONE = "erlmcp.lab."
TTL = 30
TSIG_KEY_NAME = "erlmcp-lab-key."
TSIG_ALGORITHM = "hmac-sha256"
# base64 of 32 fixed bytes. Public on purpose, like LAB_PASSWORD: loopback only.
TSIG_SECRET = "ZXJsbWNwLWRyIGxhYiBUU0lHIGtleSwgbm90IHNlY3JldA=="
REGION_ADDRESSES = {"a": "127.0.1.1", "b": "127.0.1.2", "c": "127.0.1.3"}
PRIMARY_REGION = "a"
RECORDS = ("api", "health")
SERVER_NAMES = ("dns-primary", "dns-secondary")
KEEP = {"@", *SERVER_NAMES}  # the zone's names besides RECORDS: the apex (SOA, NS) and the servers' addresses
START_TIMEOUT = 30
QUERY_TIMEOUT = 2.0


@dataclass(frozen=True)
class LabDnsServer:
    """One knotd of the lab; its files live in `home`."""

    name: str
    role: str  # primary | secondary
    port: int
    home: Path

    @property
    def conf_file(self) -> Path:
        return self.home / "knot.conf"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "knot.pid"

    @property
    def socket(self) -> Path:
        return self.run_dir / "knot.sock"

    @property
    def storage_dir(self) -> Path:
        return self.home / "storage"

    @property
    def zone_file(self) -> Path:
        return self.storage_dir / "erlmcp.lab.zone"

    @property
    def log_file(self) -> Path:
        return self.home / "knot.log"


def servers(cfg: LabConfig) -> list[LabDnsServer]:
    from erlmcp_dr.lab.config import DNS_PORT_OFFSET

    return [LabDnsServer(name, "primary" if i == 0 else "secondary", cfg.port_base + DNS_PORT_OFFSET + i,
                         cfg.root / "dns" / name) for i, name in enumerate(SERVER_NAMES)]


def server(cfg: LabConfig, name: str) -> LabDnsServer:
    for found in servers(cfg):
        if found.name == name:
            return found
    raise KeyError(f"no lab DNS server {name!r}; the lab has {', '.join(SERVER_NAMES)}")


# ---------------------------------------------------------------- files


def _common_conf(srv: LabDnsServer) -> list[str]:
    return [
        f"# erlmcp.dr lab DNS server {srv.name} ({srv.role}); written by the lab",
        "server:",
        f'    rundir: "{srv.run_dir}"',
        f'    pidfile: "{srv.pid_file}"',
        f"    listen: 127.0.0.1@{srv.port}",
        "    udp-workers: 1",
        "    tcp-workers: 1",
        "    background-workers: 1",
        "database:",
        f'    storage: "{srv.storage_dir}"',
        "control:",
        f'    listen: "{srv.socket}"',
        "log:",
        f'  - target: "{srv.log_file}"',
        "    any: info",
    ]


def _primary_conf(srv: LabDnsServer, secondary: LabDnsServer) -> str:
    return "\n".join(_common_conf(srv) + [
        "key:",
        f"  - id: {TSIG_KEY_NAME}",
        f"    algorithm: {TSIG_ALGORITHM}",
        f"    secret: {TSIG_SECRET}",
        "remote:",
        "  - id: secondary",
        f"    address: 127.0.0.1@{secondary.port}",
        "acl:",
        "  - id: update",
        "    address: 127.0.0.1",
        f"    key: {TSIG_KEY_NAME}",
        "    action: update",
        "  - id: transfer",
        "    address: 127.0.0.1",
        "    action: transfer",
        "zone:",
        f"  - domain: {ZONE}",
        f'    file: "{srv.zone_file}"',
        "    notify: secondary",
        "    acl: [update, transfer]",
        "    zonefile-sync: 0",
        "    serial-policy: increment",
    ]) + "\n"


def _secondary_conf(srv: LabDnsServer, primary: LabDnsServer) -> str:
    return "\n".join(_common_conf(srv) + [
        "remote:",
        "  - id: primary",
        f"    address: 127.0.0.1@{primary.port}",
        "acl:",
        "  - id: notify",
        "    address: 127.0.0.1",
        "    action: notify",
        "zone:",
        f"  - domain: {ZONE}",
        f'    file: "{srv.zone_file}"',
        "    master: primary",
        "    acl: notify",
        "    zonefile-sync: 0",
    ]) + "\n"


def zone_text(serial: int = 1, region: str = PRIMARY_REGION) -> str:
    """The zone as the lab creates it: SOA, NS (both servers), and api/health pointing at `region`."""
    address = REGION_ADDRESSES[region]
    lines = [
        f"$ORIGIN {ZONE}",
        f"$TTL {TTL}",
        f"@ SOA dns-primary.{ZONE} hostmaster.{ZONE} {serial} 10 10 3600 {TTL}",
        f"@ NS dns-primary.{ZONE}",
        f"@ NS dns-secondary.{ZONE}",
        "dns-primary A 127.0.0.1",
        "dns-secondary A 127.0.0.1",
    ] + [f"{name} A {address}" for name in RECORDS]
    return "\n".join(lines) + "\n"


def _usable(srv: LabDnsServer) -> bool:
    return srv.conf_file.is_file() and srv.storage_dir.is_dir()


def _init(cfg: LabConfig, srv: LabDnsServer) -> None:
    from erlmcp_dr.lab.config import make_owned_dir, write_private

    primary, secondary = servers(cfg)
    if srv.home.exists():
        shutil.rmtree(srv.home)
    for folder in (srv.home, srv.run_dir, srv.storage_dir):
        make_owned_dir(folder)
    # 0600: the primary's config holds the TSIG secret.
    write_private(srv.conf_file, _primary_conf(srv, secondary) if srv.role == "primary"
                   else _secondary_conf(srv, primary))
    if srv.role == "primary":
        write_private(srv.zone_file, zone_text())


# ---------------------------------------------------------------- processes


def lab_knot_pid(srv: LabDnsServer) -> int | None:
    """The PID in the server's pid file, only if that process is a knotd started with this server's config."""
    try:
        pid = int(srv.pid_file.read_text().split()[0])
        with open(f"/proc/{pid}/comm") as handle:
            comm = handle.read().strip()
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    if comm != KNOTD or str(srv.conf_file).encode() not in argv:
        return None
    from erlmcp_dr.lab.config import alive

    return pid if alive(pid) else None


def _start(srv: LabDnsServer, timeout: float) -> None:
    from erlmcp_dr.lab.config import ensure_port_free, lab_os_user

    if lab_knot_pid(srv) is not None:
        return
    binary = shutil.which(KNOTD) or (f"/usr/sbin/{KNOTD}" if Path(f"/usr/sbin/{KNOTD}").exists() else None)
    if binary is None:
        raise RuntimeError(f"{KNOTD} is not installed (the lab runs Knot DNS for its zone {ZONE}): run "
                           f"scripts/setup.sh, which installs Debian's knot, or apt-get install knot")
    srv.pid_file.unlink(missing_ok=True)
    srv.socket.unlink(missing_ok=True)
    ensure_port_free(srv.port, srv.name)
    user = lab_os_user()
    as_root = os.geteuid() == 0
    # argv, no shell; knotd daemonizes itself (-d) and runs as the lab OS user.
    subprocess.run([binary, "-c", str(srv.conf_file), "-d"], check=True, capture_output=True, timeout=timeout,
                   user=user.pw_uid if as_root else None, group=user.pw_gid if as_root else None,
                   extra_groups=[] if as_root else None)
    try:
        wait_for(lambda: serial_of(srv) is not None, timeout, interval=0.02,
                 what=f"{srv.name} answering for {ZONE} on port {srv.port}")
    except WaitTimeout as exc:
        tail = srv.log_file.read_text(errors="replace")[-2000:] if srv.log_file.exists() else "(no log)"
        raise WaitTimeout(f"{exc} (START_TIMEOUT); its log {srv.log_file} ends:\n{tail}", exc.last) from None


def up(cfg: LabConfig, timeout: float = START_TIMEOUT) -> None:
    """Create the servers that are missing, start those stopped, wait until the secondary is in sync."""
    from erlmcp_dr.lab.config import make_owned_dir

    if not cfg.root.exists():
        make_owned_dir(cfg.root, 0o755)  # a lab of DNS only (the tests'); lab.up made it otherwise
    make_owned_dir(cfg.root / "dns", 0o755)
    for srv in servers(cfg):
        if not _usable(srv):
            _init(cfg, srv)
    started = [srv for srv in servers(cfg) if lab_knot_pid(srv) is None]
    for srv in started:
        _start(srv, timeout)
    secondary = servers(cfg)[1]
    if secondary in started:
        # A restarted secondary keeps its refresh timer (SOA refresh, 10 s) across the restart: ask it now.
        _knotc(secondary, "zone-refresh", ZONE)
    wait_in_sync(cfg, timeout)


def _knotc(srv: LabDnsServer, *args: str) -> None:
    """One knotc command to the server's control socket (argv, no shell)."""
    binary = shutil.which("knotc") or "/usr/sbin/knotc"
    subprocess.run([binary, "-s", str(srv.socket), "-t", "5", *args], check=True, capture_output=True, timeout=10)


def stop(srv: LabDnsServer, timeout: float = START_TIMEOUT) -> bool:
    """Stop one server by PID (SIGTERM: knotd flushes its journal); False when it was not running."""
    from erlmcp_dr.lab.config import stop_pid

    pid = lab_knot_pid(srv)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    wait_for(lambda: lab_knot_pid(srv) is None or time.monotonic() >= deadline, timeout + 1, interval=0.02,
             what=f"{srv.name} stopping")
    if lab_knot_pid(srv) is not None:
        stop_pid(pid, timeout)
    return True


def down(cfg: LabConfig, timeout: float = START_TIMEOUT) -> tuple[list[str], list[str]]:
    stopped, not_running = [], []
    for srv in servers(cfg):
        (stopped if stop(srv, timeout) else not_running).append(srv.name)
    return stopped, not_running


# ---------------------------------------------------------------- queries


def _query(srv: LabDnsServer, name: str, rdtype: str) -> Any:
    import dns.message
    import dns.query

    return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=srv.port, timeout=QUERY_TIMEOUT)


def serial_of(srv: LabDnsServer) -> int | None:
    """The zone's SOA serial as the server answers it with authority; None when it does not."""
    import dns.flags
    import dns.rcode

    try:
        response = _query(srv, ZONE, "SOA")
    except Exception:  # noqa: BLE001 (not answering: a timeout, a refused port, a bad reply)
        return None
    if response.rcode() != dns.rcode.NOERROR or not response.flags & dns.flags.AA or not response.answer:
        return None
    return int(response.answer[0][0].serial)


def answers(srv: LabDnsServer, name: str, rdtype: str = "A") -> list[str]:
    """The values the server answers for name (relative to the zone, or absolute), sorted."""
    fqdn = name if name.endswith(".") else f"{name}.{ZONE}"
    response = _query(srv, fqdn, rdtype)
    return sorted(rdata.to_text() for rrset in response.answer for rdata in rrset)


def wait_in_sync(cfg: LabConfig, timeout: float = START_TIMEOUT) -> int:
    """Poll until the secondary answers the primary's serial; returns it."""
    primary, secondary = servers(cfg)

    def same() -> int | None:
        serial = serial_of(primary)
        return serial if serial is not None and serial_of(secondary) == serial else None

    try:
        serial, _ = wait_for(same, timeout, interval=0.02, what=f"{secondary.name} at {primary.name}'s serial")
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}; DNS servers: {status(cfg)}", exc.last) from None
    return int(serial)


def keyring() -> Any:
    import dns.tsigkeyring

    return dns.tsigkeyring.from_text({TSIG_KEY_NAME: TSIG_SECRET})


def reset_zone(cfg: LabConfig, region: str = PRIMARY_REGION, timeout: float = START_TIMEOUT) -> int:
    """Start what is stopped, then put the zone back as created (api/health at `region`, nothing else
    beside SOA, NS and the servers' names) with one signed UPDATE; wait until the secondary has it."""
    import dns.query
    import dns.rcode
    import dns.update

    up(cfg, timeout)
    primary = servers(cfg)[0]
    zone = _transfer(primary)
    names = [name.to_text() for name in zone.nodes]
    fresh = {name: f"{TTL} IN A {REGION_ADDRESSES[region]}" for name in RECORDS}
    if set(names) == KEEP | set(RECORDS) and all(_node_text(zone, name) == text for name, text in fresh.items()):
        return wait_in_sync(cfg, timeout)  # as created already: no update, no new serial
    update = dns.update.UpdateMessage(ZONE, keyring=keyring(), keyname=TSIG_KEY_NAME, keyalgorithm=TSIG_ALGORITHM)
    for name in sorted(set(names) - KEEP - set(RECORDS)):
        update.delete(name)
    for name in RECORDS:
        update.delete(name)
        update.add(name, TTL, "A", REGION_ADDRESSES[region])
    response = dns.query.tcp(update, "127.0.0.1", port=primary.port, timeout=QUERY_TIMEOUT)
    if response.rcode() != dns.rcode.NOERROR:
        raise RuntimeError(f"resetting {ZONE} on {primary.name} failed: {dns.rcode.to_text(response.rcode())}")
    return wait_in_sync(cfg, timeout)


def set_ttl(cfg: LabConfig, name: str, ttl: int, timeout: float = START_TIMEOUT) -> int:
    """A record's TTL (its addresses as the primary answers them now), by one signed UPDATE at the primary; then until
    the secondary has it. A drill's client keeps its answer one TTL: tests and benchmarks lower the lab's 30 s so a
    drill waits for the client's next resolution seconds, not half a minute. Returns the new serial."""
    import dns.query
    import dns.rcode
    import dns.rdata
    import dns.update

    primary = servers(cfg)[0]
    addresses = answers(primary, name)
    if not addresses:
        raise RuntimeError(f"{name} has no A record on {primary.name}: nothing to set a TTL on")
    update = dns.update.UpdateMessage(ZONE, keyring=keyring(), keyname=TSIG_KEY_NAME, keyalgorithm=TSIG_ALGORITHM)
    update.replace(name, ttl, *[dns.rdata.from_text("IN", "A", address) for address in addresses])
    response = dns.query.tcp(update, "127.0.0.1", port=primary.port, timeout=QUERY_TIMEOUT)
    if response.rcode() != dns.rcode.NOERROR:
        raise RuntimeError(f"setting {name}'s TTL on {primary.name} failed: {dns.rcode.to_text(response.rcode())}")
    return wait_in_sync(cfg, timeout)


def _node_text(zone: Any, name: str) -> str:
    """Every record at name as zone file lines without the owner ('30 IN A 127.0.1.1')."""
    import dns.name

    return zone.find_node(name).to_text(dns.name.from_text(name, None)).split(" ", 1)[1]


def _transfer(srv: LabDnsServer) -> Any:
    """The zone as the server holds it (dns.zone.Zone, relative names, '@' for the apex), by AXFR."""
    import dns.query
    import dns.zone

    return dns.zone.from_xfr(dns.query.xfr("127.0.0.1", ZONE, port=srv.port, timeout=QUERY_TIMEOUT))


# ---------------------------------------------------------------- status and inventory


def status(cfg: LabConfig) -> list[dict[str, Any]]:
    """Each server: state, PID, serial; the secondary's `in_sync` (its serial equals the primary's)."""
    rows = []
    for srv in servers(cfg):
        row: dict[str, Any] = {"name": srv.name, "role": srv.role, "port": srv.port, "state": "missing",
                               "pid": None, "serial": None, "in_sync": None}
        if _usable(srv):
            row["pid"] = lab_knot_pid(srv)
            row["state"] = "running" if row["pid"] is not None else "stopped"
            row["serial"] = serial_of(srv) if row["pid"] is not None else None
        rows.append(row)
    primary_serial = rows[0]["serial"]
    for row in rows[1:]:
        row["in_sync"] = primary_serial is not None and row["serial"] == primary_serial
    return rows


def ok(rows: list[dict[str, Any]]) -> bool:
    return all(row["state"] == "running" and row["serial"] is not None for row in rows) and all(
        row["in_sync"] for row in rows[1:])


def format_status(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["", f"{'dns':14} {'role':10} {'port':6} {'state':8} {'serial':>8}  in sync"]
    for row in rows:
        sync = "" if row["in_sync"] is None else ("yes" if row["in_sync"] else "NO")
        lines.append(f"{row['name']:14} {row['role']:10} {row['port']:<6} {row['state']:8} "
                     f"{str(row['serial'] if row['serial'] is not None else '-'):>8}  {sync}")
    return lines


def inventory_group(cfg: LabConfig) -> dict[str, Any]:
    """The inventory's `dns` group: one host per server (dns_host, dns_port, dns_role)."""
    return {
        "hosts": {srv.name: {"dns_port": srv.port, "dns_role": srv.role} for srv in servers(cfg)},
        "vars": {"ansible_connection": "local", "dns_host": "127.0.0.1"},
    }


def inventory_vars() -> dict[str, Any]:
    """What the DNS runbook reads on the controller (`all` vars): the zone, the provider, the TSIG key and
    the region -> address map. The secret is the lab's public one (a real inventory keeps it in vault)."""
    return {
        "dns_provider": "rfc2136",
        "dns_zone": ZONE,
        "dns_records": ",".join(RECORDS),  # comma-separated like the runbook's records (a YAML list works too)
        "dns_tsig_key_name": TSIG_KEY_NAME,
        "dns_tsig_algorithm": TSIG_ALGORITHM,
        "dns_tsig_secret": TSIG_SECRET,
        "dns_region_addresses": dict(REGION_ADDRESSES),
    }
