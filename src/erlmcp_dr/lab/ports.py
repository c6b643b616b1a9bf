"""Where labs listen, and who holds a port a lab server needs.

A lab port inside the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 on
Linux by default) can be taken at any moment by an outgoing connection's source port, and stays taken
for a minute in TIME-WAIT after it closes: PostgreSQL then cannot bind it ("could not bind ... Address
already in use"). So the default lab and the test labs live below that range, and when a port is held
anyway the error names the holder (the process, or the connection and its TCP state).

Kept free of lab/lifecycle.py's imports: paths.default_inventory() reads the lab's recorded base through here on
every run.
"""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path
from typing import Optional

PORT_BASE_ENV = "ERLMCP_DR_LAB_PORT_BASE"
# Below the ephemeral range of every common kernel default (Linux 32768, IANA/BSD 49152); the shipped
# inventory (inventories/lab) names these ports. Test labs take bases in TEST_PORTS, above the default lab.
DEFAULT_PORT_BASE = 15432
TEST_PORTS = (16000, 32000)
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_EPHEMERAL_DEFAULT = (32768, 60999)
LAB_RECORD = "lab.json"  # what lab/lifecycle.py writes when it first builds a lab: {"port_base": ..., "nodes": [...]}

# /proc/net/tcp's states (include/net/tcp_states.h)
TCP_STATES = {"01": "ESTABLISHED", "02": "SYN-SENT", "03": "SYN-RECV", "04": "FIN-WAIT-1", "05": "FIN-WAIT-2",
              "06": "TIME-WAIT", "07": "CLOSE", "08": "CLOSE-WAIT", "09": "LAST-ACK", "0A": "LISTEN",
              "0B": "CLOSING"}


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range of source ports for outgoing connections (Linux's default where unreadable)."""
    try:
        low, high = (int(field) for field in path.read_text().split())
    except (OSError, ValueError):
        return LINUX_EPHEMERAL_DEFAULT
    return low, high


def below_ephemeral(low: int, high: int, width: int, ephemeral: Optional[tuple[int, int]] = None) -> tuple[int, int]:
    """(low, high) cut so that no base in it reaches the ephemeral range; as given when nothing would be left."""
    start = (ephemeral or ephemeral_range())[0]
    if start - width > low:
        return low, min(high, start)
    return low, high


def in_ephemeral_range(base: int, width: int, ephemeral: Optional[tuple[int, int]] = None) -> bool:
    low, high = ephemeral or ephemeral_range()
    return base <= high and base + width - 1 >= low


def port_free(port: int) -> bool:
    """Can a server bind 127.0.0.1:port now (with SO_REUSEADDR, as PostgreSQL and Redis bind)?"""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_base(low: int, high: int, width: int) -> int:
    """A base with `width` consecutive free loopback ports in [low, high), below the ephemeral range."""
    low, high = below_ephemeral(low, high, width)
    for _ in range(200):
        base = random.randrange(low, high - width, width)
        if all(port_free(port) for port in range(base, base + width)):
            return base
    raise RuntimeError(f"no {width} consecutive free ports found between {low} and {high}")


def port_holders(port: int, proc: Path = Path("/proc")) -> list[str]:
    """Who holds TCP `port` on this machine: one line per socket, with its state and, when this user can see
    it, the process (pid and command line). Empty when nothing does (or /proc cannot say)."""
    sockets = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port:
                sockets.append((_address(local), _address(remote), TCP_STATES.get(state, state), inode))
    owners = _socket_owners({inode for *_, inode in sockets if inode != "0"}, proc)
    described = []
    for local, remote, state, inode in sockets:
        if state == "LISTEN":
            line = f"{local} listening"
        else:
            line = f"connection {local} -> {remote} in {state}"
        if inode in owners:
            line += f", held by {owners[inode]}"
        elif state == "TIME-WAIT":
            line += " (closed, held by the kernel for up to 60 s)"
        described.append(line)
    return described


def _address(hex_address: str) -> str:
    host, port = hex_address.rsplit(":", 1)
    if len(host) == 8:  # IPv4, little-endian
        ip = socket.inet_ntop(socket.AF_INET, bytes.fromhex(host)[::-1])
    else:
        words = bytes.fromhex(host)
        ip = socket.inet_ntop(socket.AF_INET6, b"".join(words[i:i + 4][::-1] for i in range(0, 16, 4)))
    return f"{ip}:{int(port, 16)}"


def _socket_owners(inodes: set[str], proc: Path) -> dict[str, str]:
    """socket inode -> "pid N (command line)", for the processes this user may look into."""
    owners: dict[str, str] = {}
    if not inodes:
        return owners
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        for link in _fd_links(pid_dir):
            inode = link[len("socket:["):-1] if link.startswith("socket:[") else None
            if inode in inodes and inode not in owners:
                owners[inode] = f"pid {pid_dir.name} ({_command_line(pid_dir)})"
    return owners


def _fd_links(pid_dir: Path) -> list[str]:
    """What the process's open files point at; those that close while read (or may not be read) are left out."""
    try:
        fds = list((pid_dir / "fd").iterdir())
    except OSError:
        return []
    links = []
    for fd in fds:
        try:
            links.append(os.readlink(fd))
        except OSError:
            continue
    return links


def _command_line(pid_dir: Path) -> str:
    try:
        raw = (pid_dir / "cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:120] or "?"


def describe_busy_port(port: int, what: str) -> str:
    """One sentence for a port a lab server cannot bind: who holds it, and what to do."""
    holders = port_holders(port)
    held = "; ".join(holders) if holders else "no socket visible in /proc/net/tcp (another network namespace?)"
    low, high = ephemeral_range()
    hint = (f"; it lies in the kernel's ephemeral port range {low}-{high}, where any outgoing connection may take "
            f"it: choose a base below {low}" if low <= port <= high else "")
    return (f"port {port} ({what}) is in use: {held}{hint}; stop what holds it, or run the lab on other ports "
            f"({PORT_BASE_ENV}=<base> runbook lab reset, then runbook lab up)")


def recorded_port_base(lab_root: Path) -> Optional[int]:
    """The port base the lab in `lab_root` was built with (its lab.json), or None when there is no lab."""
    try:
        return int(json.loads((lab_root / LAB_RECORD).read_text())["port_base"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def checkout_inventory(checkout: Path, lab_dir: Path, written: Path) -> Path:
    """The default inventory in a checkout: the shipped inventories/lab while the lab is the one it names (this
    checkout's .lab/ on DEFAULT_PORT_BASE), else the inventory `runbook lab up` wrote for the lab that is there.

    A runbook must never read one lab's servers and act on another's data directories: when the lab here runs
    on other ports (ERLMCP_DR_LAB_PORT_BASE, or built before the default moved) or sits in another folder
    (ERLMCP_DR_LAB_DIR), the shipped file would name the wrong ports or folders, so it is not used; when
    ERLMCP_DR_LAB_PORT_BASE names another base than the lab was built on, nothing is used.
    """
    from erlmcp_dr.errors import ParameterError

    shipped = checkout / "inventories" / "lab"
    recorded = recorded_port_base(lab_dir)
    asked = os.environ.get(PORT_BASE_ENV)
    asked_base = int(asked) if asked and asked.strip().isdigit() else None
    if asked_base is not None and recorded is not None and asked_base != recorded:
        raise ParameterError("inventory", (
            f"{PORT_BASE_ENV}={asked_base}, but the lab in {lab_dir} was built on port base {recorded}: the "
            f"default inventory would name one lab's ports and the other's folders. Unset {PORT_BASE_ENV} (or set "
            f"it to {recorded}), run `runbook lab reset` to rebuild the lab on {asked_base}, or pass -i"))
    base = recorded if recorded is not None else asked_base
    if lab_dir.resolve() == (checkout / ".lab").resolve() and base in (None, DEFAULT_PORT_BASE):
        return shipped
    if written.is_file():
        return written
    raise ParameterError("inventory", (
        f"the lab in {lab_dir} (port base {base or DEFAULT_PORT_BASE}) is not the one {shipped} names "
        f"({checkout / '.lab'}, port base {DEFAULT_PORT_BASE}) and has no inventory of its own yet: run "
        f"`runbook lab up` (it writes {written}), or pass -i"))
