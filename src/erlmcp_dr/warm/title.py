"""What /proc shows of a forked run: its command line and its run marker, written over the zygote's own.

A process forked from the zygote (no exec) keeps the zygote's /proc/<pid>/cmdline and /proc/<pid>/environ: they are
the memory the kernel laid out at the zygote's exec (arg_start..arg_end, env_start..env_end in /proc/self/stat),
not Python's sys.argv or os.environ. The guard's rules read exactly those: a run's workers are found by
`ansible-playbook` in their command line (their sessions are the run's), its orphans by `ERLMCP_DR_RUN=<marker>`
in their environment, and the tests find a run's processes by its run id. So the zygote starts with room in both
(a padding argument, and ERLMCP_DR_RUN set to a placeholder of ROOM characters), and the forked run writes its
own command line and marker there, as setproctitle does. Its workers, forked from it, inherit both.
"""

from __future__ import annotations

# typing only for the annotations (never evaluated): the guard imports this module, and typing costs its start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Tuple

ROOM = 1024  # characters reserved for the marker's value; the command line gets ARGV_ROOM
ARGV_ROOM = 4096
PLACEHOLDER_CHAR = "."
MARKER = "ERLMCP_DR_RUN"


def _areas() -> Tuple[int, int, int, int]:
    """(arg_start, arg_end, env_start, env_end) of this process (proc(5), fields 48 to 51)."""
    with open("/proc/self/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[45]), int(fields[46]), int(fields[47]), int(fields[48])


def _write(start: int, end: int, data: bytes) -> None:
    """Overwrites [start, end) with data, the rest with NULs (data cut to fit, always NUL-ended)."""
    import ctypes  # here: only the forked run writes its title; the guard imports this module for MARKER

    size = end - start
    data = data[: size - 1]
    ctypes.memmove(start, data + b"\0" * (size - len(data)), size)


def set_command_line(argv: List[str]) -> None:
    start, end, _, _ = _areas()
    _write(start, end, b"\0".join(arg.encode(errors="replace") for arg in argv))


def set_run_marker(value: str) -> bool:
    """Writes ERLMCP_DR_RUN=<value> over the placeholder in the environment area; False when there is none (the
    process did not start with it) or the value does not fit."""
    _, _, start, end = _areas()
    with open("/proc/self/environ", "rb") as handle:
        area = handle.read()
    needle = f"{MARKER}=".encode()
    offset = 0 if area.startswith(needle) else area.find(b"\0" + needle) + 1
    if offset <= 0 and not area.startswith(needle):
        return False
    slot_end = area.find(b"\0", offset)
    slot_end = len(area) if slot_end < 0 else slot_end
    entry = needle + value.encode()
    if len(entry) > slot_end - offset or start + slot_end > end:
        return False
    _write(start + offset, start + slot_end + 1, entry)
    return True


def placeholder() -> str:
    return PLACEHOLDER_CHAR * ROOM
