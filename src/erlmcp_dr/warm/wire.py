"""The zygote's socket: where it lives, who may use it, and its messages (standard library only).

A message is a 4-byte big-endian length and that many bytes of JSON; the first message of a run also carries the
run's stdin, stdout and stderr as SCM_RIGHTS file descriptors, so the forked ansible-playbook writes to the pty
ansible-runner reads, exactly as a cold one would.

Who may connect: the socket sits in a folder that is the user's own, 0700 (`private_dir` refuses any other), and
each side checks the other's uid with SO_PEERCRED (`peer_uid_is_mine`): the kernel's word, not the peer's.
"""

from __future__ import annotations

import _socket
import os
import stat
import struct

from erlmcp_dr.warm import c_json

# typing only for the annotations (never evaluated): the guard imports this module, and typing costs its start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from socket import socket as Socket
    from typing import Any, Dict, List, Optional, Tuple

MAX_MESSAGE = 16 * 1024 * 1024  # an environment and an argv: far below this
MAX_FDS = 3
_LENGTH = struct.Struct(">I")
_FD_SIZE = struct.calcsize("i")  # descriptors travel as C ints (struct, not array: array imports collections)


class WireError(OSError):
    """The other side broke the protocol or went away."""


def default_dir() -> str:
    """$ERLMCP_DR_WARM_DIR, else $XDG_RUNTIME_DIR/erlmcp-dr-warm, else /tmp/erlmcp-dr-warm-<uid>: short, as a
    Unix socket's path must be (108 bytes)."""
    configured = os.environ.get("ERLMCP_DR_WARM_DIR")
    if configured:
        return configured
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "erlmcp-dr-warm")
    return f"/tmp/erlmcp-dr-warm-{os.getuid()}"


INFO_SUFFIX = ".json"  # the zygote's record: pid, key, kind, manifest
STARTING_SUFFIX = ".starting"  # while a CLI zygote starts in the background (the zygote removes it once it serves)


def beside(socket_path: str, suffix: str) -> str:
    """A zygote's file next to its socket (z-<key>.sock): ".json" its record, ".lock" its start lock, ".log" its log,
    ".starting" while a CLI zygote starts in the background."""
    return socket_path[: -len(".sock")] + suffix


def private_dir(path: str) -> str:
    """Makes `path` (0700) if missing; refuses (WireError naming what it found) a folder that is a symlink, not the
    user's own, or open to others: another user could then put a socket of theirs where ours is expected."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise WireError(f"{path} is not a folder (found mode {stat.filemode(info.st_mode)}); remove it or set "
                        "ERLMCP_DR_WARM_DIR to a folder of your own")
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise WireError(f"{path} must be yours and 0700 (found uid {info.st_uid}, mode {oct(info.st_mode & 0o777)}, "
                        f"expected uid {os.getuid()}, 0o700); fix it or set ERLMCP_DR_WARM_DIR")
    return path


def peer_uid_is_mine(sock: Socket) -> bool:
    """SO_PEERCRED: the uid of the process at the other end (as the kernel recorded it at connect) is ours."""
    return peer_credentials(sock)[1] == os.getuid()


def peer_credentials(sock: Socket) -> Tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected Unix socket."""
    raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def send(sock: Socket, message: Dict[str, Any], fds: Optional[List[int]] = None) -> None:
    data = c_json.dumps(message).encode()
    payload = _LENGTH.pack(len(data)) + data
    if fds:
        ancillary = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
        sent = sock.sendmsg([payload], ancillary)
        payload = payload[sent:]
    if payload:
        sock.sendall(payload)


def receive(sock: Socket) -> Tuple[Dict[str, Any], List[int]]:
    """One message and the file descriptors that came with it (the caller owns and closes them)."""
    fds: List[int] = []
    head = _read(sock, _LENGTH.size, fds)
    (length,) = _LENGTH.unpack(head)
    if length > MAX_MESSAGE:
        _close_all(fds)
        raise WireError(f"message of {length} bytes (at most {MAX_MESSAGE})")
    body = _read(sock, length, fds)
    try:
        message = c_json.loads(body)
    except ValueError as exc:
        _close_all(fds)
        raise WireError(f"message is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        _close_all(fds)
        raise WireError("message is not a JSON object")
    return message, fds


def _read(sock: Socket, size: int, fds: List[int]) -> bytes:
    chunks = b""
    room = _socket.CMSG_SPACE(MAX_FDS * _FD_SIZE)
    while len(chunks) < size:
        data, ancillary, _flags, _addr = sock.recvmsg(size - len(chunks), room)
        for level, kind, raw in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                count = len(raw) // _FD_SIZE
                fds.extend(struct.unpack(f"{count}i", raw[: count * _FD_SIZE]))
        if not data:
            _close_all(fds)
            raise WireError("the other side closed the connection")
        chunks += data
    return chunks


def _close_all(fds: List[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()
