"""A pg_bin_dir whose pg_rewind is the real one, frozen (SIGSTOP) while it copies: a kill that lands INSIDE pg_rewind.

On the lab's small databases pg_rewind ends before a harness polling from outside can kill it. Here the kill point
is set by pg_rewind's own output, not by time: the wrapper runs the real pg_rewind with --debug, its stdout and
stderr into a pipe of one page (F_SETPIPE_SZ), read a byte at a time. pg_rewind logs "received chunk for file" before
it writes each chunk; the first such line comes after its queueing phase, in which pg_rewind (15) truncated every file
it copies whole and removed the files the source lacks. On that line the wrapper stops pg_rewind with SIGSTOP. Since
pg_rewind blocks once the pipe is full, it can be at most one page of output past that line: as long as more than a
page of chunk lines remains (the caller makes the source hold several WAL segments: 16 lines each), pg_rewind is
stopped mid-copy, before its last step (the control file). Then the wrapper writes `frozen` (JSON: the pids of the
module process that ran it, its own, pg_rewind's; the line) into its folder and waits; the caller SIGKILLs the three,
as a kill -9 of the run's tree would. When pg_rewind ends without that line, it writes `missed` and exits with its
status, so a caller can tell a kill that did not land.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402

# Runs as the data directory's owner (the module drops to it): the system interpreter and the standard library only.
_FREEZING_PG_REWIND = '''#!/usr/bin/python3
import fcntl, json, os, signal, subprocess, sys

REAL, OUT, AFTER_END = {real!r}, {out!r}, {after_end!r}
F_SETPIPE_SZ = 1031


def publish(name, content):
    tmp = os.path.join(OUT, "." + name)
    with open(tmp, "w") as handle:
        json.dump(content, handle)
    os.rename(tmp, os.path.join(OUT, name))


read_fd, write_fd = os.pipe()
fcntl.fcntl(write_fd, F_SETPIPE_SZ, 4096)
proc = subprocess.Popen([os.path.join(REAL, "pg_rewind"), "--debug"] + sys.argv[1:], stdout=write_fd, stderr=write_fd)
os.close(write_fd)
lines = 0
with open(read_fd, "rb", buffering=0) as pipe, open(os.path.join(OUT, "rewind.log"), "wb") as log:
    for line in iter(pipe.readline, b""):
        log.write(line)
        lines += 1
        if not AFTER_END and b"received chunk for file" in line:
            os.kill(proc.pid, signal.SIGSTOP)
            log.flush()
            publish("frozen", dict(module_pid=os.getppid(), wrapper_pid=os.getpid(), pg_rewind_pid=proc.pid,
                                   line=line.decode(errors="replace").strip(), lines_before=lines))
            while True:
                signal.pause()
rc = proc.wait()
if AFTER_END and rc == 0:  # pg_rewind ended well; the module has not seen it: hold it there
    publish("frozen", dict(module_pid=os.getppid(), wrapper_pid=os.getpid(), pg_rewind_pid=proc.pid,
                           line="pg_rewind ended (rc 0)", lines_before=lines))
    while True:
        signal.pause()
publish("missed", dict(rc=rc, lines=lines))
sys.exit(rc)
'''


def bin_dir_freezing_pg_rewind(cfg: lab.LabConfig, name: str = "bin-freezing-pg-rewind",
                               after_end: bool = False) -> Path:
    """A pg_bin_dir (links to the real binaries) whose pg_rewind freezes itself mid-copy (see the module's doc), or,
    with after_end, holds the module waiting once the real pg_rewind ended well (a kill between pg_rewind and the
    node's own config files put back)."""
    bin_dir = cfg.root / name
    lab.make_owned_dir(bin_dir, 0o755)
    real = Path(lab.find_bin_dir())
    for binary in real.iterdir():
        if binary.name != "pg_rewind" and not (bin_dir / binary.name).exists():
            (bin_dir / binary.name).symlink_to(binary)
    script = bin_dir / "pg_rewind"
    script.write_text(_FREEZING_PG_REWIND.format(real=str(real), out=str(bin_dir), after_end=after_end))
    script.chmod(0o755)
    return bin_dir


def wait_frozen(bin_dir: Path, run_ended: Any, deadline: float) -> dict[str, Any]:
    """The `frozen` facts once pg_rewind is stopped mid-copy; AssertionError when the run ended first (the kill
    would not land inside pg_rewind: `missed` says how pg_rewind ended)."""

    def probe() -> dict[str, Any] | None:
        if (bin_dir / "frozen").exists():
            return json.loads((bin_dir / "frozen").read_text())
        if run_ended():
            missed = bin_dir / "missed"
            raise AssertionError("the run ended before pg_rewind copied anything: "
                                 + (missed.read_text() if missed.exists() else "pg_rewind did not run"))
        return None

    return wait_for(probe, deadline, interval=0.02, what="pg_rewind frozen mid-copy")[0]


def kill_frozen_run(frozen: dict[str, Any]) -> None:
    """SIGKILL the module process, pg_rewind and the wrapper: a kill -9 of the run's tree while pg_rewind copies."""
    for key in ("module_pid", "pg_rewind_pid", "wrapper_pid"):
        try:
            os.kill(frozen[key], signal.SIGKILL)
        except ProcessLookupError:
            pass
