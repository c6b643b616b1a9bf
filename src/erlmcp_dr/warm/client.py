"""The guard's side of the warm start (standard library only: it runs in every run's guard).

`start_run` finds the zygote for the run's key (fingerprint.key), checks its manifest against the files on disk,
starts a fresh zygote when there is none, or the one there is stale or dead, and hands it the run: argv, environment,
working directory, umask, run marker, and the guard's stdin/stdout/stderr (the pty ansible-runner reads). It returns
a WarmRun whose `wait()` is ansible-playbook's wait status; `Unavailable` (with the reason) means the guard runs
ansible-playbook cold, and says so.
"""

from __future__ import annotations

import _signal
import _socket
import fcntl
import os
import select
import sys
import time

from erlmcp_dr.warm import IDLE_ENV, START_TIMEOUT_ENV, c_json, fingerprint, title, wire

# typing only for the annotations (never evaluated): the guard imports this module, and typing costs its start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from socket import socket as Socket
    from typing import Any, Dict, List, Optional

DEFAULT_IDLE_SECONDS = 900
DEFAULT_START_TIMEOUT = 60.0
LOG_TAIL = 2000


class Unavailable(Exception):
    """No zygote can serve this run; the message says why (the run starts cold)."""


class WarmRun:
    """A run the zygote serves: `server` is its run server's pid (and start time, against pid reuse)."""

    def __init__(self, sock: Socket, server: int, server_start_time: Optional[int], child: int) -> None:
        self.sock = sock
        self.server = server
        self.server_start_time = server_start_time
        self.child = child

    def record(self) -> Dict[str, Any]:
        return {"mode": "warm", "pid": self.server, "pid_start_time": self.server_start_time, "child": self.child}

    def wait(self) -> Optional[int]:
        """ansible-playbook's wait status, or None when the run server went away without one (it was killed)."""
        try:
            message, fds = wire.receive(self.sock)
        except OSError:
            return None
        for fd in fds:
            os.close(fd)
        status = message.get("status")
        return status if isinstance(status, int) else None


def start_run(argv: List[str], script: str, marker: str) -> WarmRun:
    """Hands the run to a zygote (started if need be); Unavailable when none can take it."""
    environ = dict(os.environ)
    cwd = os.getcwd()
    key = fingerprint.key(environ, cwd)
    try:
        directory = wire.private_dir(wire.default_dir())
    except OSError as exc:
        raise Unavailable(f"no private folder for the zygote's socket: {exc}") from exc
    socket_path = os.path.join(directory, f"z-{key}.sock")
    sock = _connect_fresh(socket_path) or _start_and_connect(socket_path, key, environ, cwd)
    request = {"key": key, "argv": argv, "script": script, "marker": marker, "cwd": cwd, "umask": _umask(),
               "env": dict(environ, **{title.MARKER: marker})}
    try:
        sock.settimeout(_number(environ.get(START_TIMEOUT_ENV), DEFAULT_START_TIMEOUT))
        wire.send(sock, request, [0, 1, 2])
        reply, fds = wire.receive(sock)
        sock.settimeout(None)
    except OSError as exc:
        sock.close()
        raise Unavailable(f"the zygote at {socket_path} did not take the run: {exc}") from exc
    for fd in fds:
        os.close(fd)
    if "error" in reply or not isinstance(reply.get("server"), int):
        sock.close()
        raise Unavailable(f"the zygote at {socket_path} refused the run: {reply.get('error', reply)}")
    return WarmRun(sock, reply["server"], reply.get("server_start_time"), int(reply.get("child") or 0))


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _connect_fresh(socket_path: str) -> Optional[Socket]:
    """A connection to the zygote at `socket_path` when it is alive, ours, and loaded nothing that changed since;
    None otherwise (a stale zygote is stopped on the way)."""
    info = read_info(socket_path)
    if not info:
        return None
    if not _alive(info):
        stop(socket_path)  # crashed or killed: its files go, a fresh one starts
        return None
    if fingerprint.stale_files(info.get("files")) != []:
        stop(socket_path)  # it loaded a file that changed since (or its manifest is unreadable)
        return None
    return _connect(socket_path)


def _connect(socket_path: str) -> Optional[Socket]:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
        if not wire.peer_uid_is_mine(sock):
            raise OSError(f"{socket_path} is served by another user")
    except OSError:
        sock.close()
        return None
    return sock


def _start_and_connect(socket_path: str, key: str, environ: Dict[str, str], cwd: str) -> Socket:
    """Starts a zygote (one at a time per key: a lock file), waits until it serves, and connects."""
    lock_fd = os.open(wire.beside(socket_path, ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        sock = _connect_fresh(socket_path)  # another run started it while this one waited for the lock
        if sock is None:
            start_zygote(socket_path, key, environ, cwd)
            sock = _connect(socket_path)
        if sock is None:
            raise Unavailable(f"the zygote started at {socket_path} does not answer")
        return sock
    finally:
        os.close(lock_fd)


def start_zygote(socket_path: str, key: str, environ: Dict[str, str], cwd: str, kind: str = "playbook",
                 wait: bool = True) -> int:
    """Starts a zygote of `kind` detached from this process (a double fork: its parent is init or the nearest
    subreaper, never the run) and waits until it serves; returns its pid. Unavailable with the end of its log when it
    cannot. wait=False returns 0 at once: the zygote serves later runs (its start does not delay this one)."""
    idle = _number(environ.get(IDLE_ENV), DEFAULT_IDLE_SECONDS)
    deadline = time.monotonic() + _number(environ.get(START_TIMEOUT_ENV), DEFAULT_START_TIMEOUT)
    log_path = wire.beside(socket_path, ".log")
    env = dict(fingerprint.zygote_env(environ), **{title.MARKER: title.placeholder()})
    # -P: nothing from the working directory (a playbook folder) shadows a module the zygote imports
    argv = [sys.executable, "-P", "-m", "erlmcp_dr.warm.zygote", socket_path, key, "", str(idle), " " * title.ARGV_ROOM,
            kind]
    read_end, write_end = os.pipe()
    argv[6] = str(write_end)
    middle = os.fork()
    if middle == 0:
        try:
            os.close(read_end)
            os.setsid()
            if os.fork() == 0:
                _exec_zygote(argv, env, cwd, log_path, write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(middle, 0)
    if not wait:
        os.close(read_end)  # the zygote's "ready" then meets a closed pipe, which it ignores
        return 0
    try:
        answer = _read_until(read_end, deadline)
    finally:
        os.close(read_end)
    if not answer.strip().isdigit():
        raise Unavailable(f"the zygote did not start (log {log_path}): {_tail(log_path)}")
    return int(answer)


def _exec_zygote(argv: List[str], env: Dict[str, str], cwd: str, log_path: str, ready_fd: int) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.set_inheritable(ready_fd, True)
    os.closerange(3, ready_fd)
    os.closerange(ready_fd + 1, 65536)
    os.chdir(cwd)
    for signum in (_signal.SIGTERM, _signal.SIGINT):
        _signal.signal(signum, _signal.SIG_DFL)
    os.execve(sys.executable, argv, env)


def _read_until(fd: int, deadline: float) -> str:
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - LOG_TAIL))
            return handle.read().decode(errors="replace").strip() or "(empty)"
    except OSError as exc:
        return f"(no log: {exc})"


def _number(text: Optional[str], default: float) -> float:
    try:
        value = float(text) if text else default
    except ValueError:
        return default
    return value if value > 0 else default


# ---------------------------------------------------------------- the zygotes on disk: info, stop


def zygote_info_path(socket_path: str) -> str:
    return wire.beside(socket_path, wire.INFO_SUFFIX)


def read_info(socket_path: str) -> Dict[str, Any]:
    try:
        with open(zygote_info_path(socket_path), encoding="utf-8") as handle:
            info = c_json.loads(handle.read())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _alive(info: Dict[str, Any]) -> bool:
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[19]) == info.get("pid_start_time")


def stop(socket_path: str) -> bool:
    """Stops the zygote at `socket_path` (SIGTERM, when its pid and start time still match) and removes its files;
    runs it served go on. True when a live zygote was signalled."""
    info = read_info(socket_path)
    signalled = False
    if info and _alive(info):
        try:
            os.kill(int(info["pid"]), _signal.SIGTERM)
            signalled = True
        except OSError:
            pass
    for path in (socket_path, zygote_info_path(socket_path)):
        try:
            os.unlink(path)
        except OSError:
            pass
    return signalled


def zygotes(directory: Optional[str] = None) -> List[Dict[str, Any]]:
    """The zygotes recorded in the folder: their info (pid, key, kind, started_at, alive), for `runbook warm
    status`."""
    directory = directory or wire.default_dir()
    found = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return found
    for name in names:
        if name.startswith("z-") and name.endswith(".sock"):
            path = os.path.join(directory, name)
            info = read_info(path)
            found.append({"socket": path, "pid": info.get("pid"), "key": info.get("key"),
                          "kind": info.get("kind", "playbook"), "started_at": info.get("started_at"),
                          "alive": bool(info) and _alive(info), "files": len(info.get("files") or {})})
    return found


def served_cpu_seconds(pid: int, settle: float = 10.0) -> Optional[float]:
    """The CPU seconds of the runs a zygote served so far (its reaped children: run servers, their ansible-playbook
    and workers), once it has reaped every run server (polled until `settle` seconds); None when it is gone. A warm
    run's CPU is not its `runbook` process's children's: benchmarks add this."""
    deadline = time.monotonic() + settle
    while True:
        try:
            with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
                busy = handle.read().split()
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        if not busy or time.monotonic() > deadline:
            return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        time.sleep(0.05)

