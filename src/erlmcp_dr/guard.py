"""The process guard: a run's ansible-playbook dies with `runbook`, and the daemons a run starts do not.

`guarded(command, private_data_dir)` runs the command under a small guard script (built from this module's own
functions by `guard_source()`): when the `runbook` process dies, even by SIGKILL, the kernel tells the guard
(PR_SET_PDEATHSIG), which kills the run's processes: ansible-playbook, its workers and the modules they run, never
a server the run started. Also: liveness of the process a run folder's marker names (process_alive), the cancel
callback (Stopper) and the pexpect spawn that closes a finished child at once. docs/design.md, "The run guard and
the daemons a run starts".
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from erlmcp_dr import paths

log = logging.getLogger(__name__)


def process_alive(marker: Mapping[str, Any]) -> bool:
    """Is the process a marker names (pid + its start time, against PID reuse) still running?"""
    pid = marker.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    started = process_start_time(pid)
    if started is None:
        return False
    return marker.get("pid_start_time") in (None, started)


def process_start_time(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), None when gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] == "Z":  # a zombie has finished
        return None
    return int(fields[19])


def process_marker() -> Dict[str, Any]:
    return {"pid": os.getpid(), "pid_start_time": process_start_time(os.getpid()), "host": os.uname().nodename}


# ---------------------------------------------------------------- the guard: the child dies with `runbook`

# ansible-playbook's workers call setsid(), so a process group does not hold a run: its process TREE does.
# Daemons a run starts (a postmaster from pg_ctl start, a daemonized redis-server) also call setsid() and must
# outlive it: only the sessions of the guard and of ansible-playbook processes (the workers) are the run's.
#
# The guard is NOT a subreaper (issue 16 row 3): a subreaper adopts every daemon the run starts, so the server
# sits in the run's process tree and dies with any kill of that tree (an operator's, a supervisor's, a test's).
# Without it a daemon is re-parented to init (or to whatever subreaper is above `runbook`) and leaves the tree.
# The run's own orphans (a module's background child left when ansible-playbook ended, the workers of a killed
# ansible-playbook) are found instead by the run marker the guard puts in its child's environment (RUN_MARKER,
# inherited by every process of the run): a marked process outside the tree is the run's unless it is in a
# session whose leader still lives outside the run's sessions (a daemon and its children). docs/design.md,
# "The run guard and the daemons a run starts".
RUN_MARKER = "ERLMCP_DR_RUN"
NO_ROOT = -1  # kill_tree's root when only the marker finds the run (never a pid: no tree, no PID reuse)


def proc_stat(pid: int) -> tuple:
    """(parent pid, session id, start time in clock ticks since boot) of a process, or None when it is gone."""
    try:  # os.read, not open(): this runs for every process at each run's end (process_table)
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        try:
            fields = os.read(fd, 4096).rsplit(b")", 1)[1].split()
        finally:
            os.close(fd)
        return int(fields[1]), int(fields[3]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def process_table() -> dict:
    """{pid: proc_stat(pid)} of every process in /proc, zombies included."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            found = proc_stat(int(name))
            if found is not None:
                table[int(name)] = found
    return table


def process_tree(root: int, table: dict | None = None) -> dict:
    """{pid: session id} of `root` and its descendants (through the parent pids in /proc, or in `table`, a
    process_table()), zombies included."""
    table = process_table() if table is None else table
    children: dict = {}
    for pid, found in table.items():
        children.setdefault(found[0], []).append(pid)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            tree[pid] = table[pid][1]
        todo.extend(children.get(pid, []))
    return tree


def marked_processes(marker: str, candidates: list | None = None) -> list:
    """The pids (of `candidates`, else of every process) whose environment (as they started) holds
    RUN_MARKER=marker: the run's processes wherever the kernel re-parented them. Processes of other users are not
    readable, hence never the run's."""
    needle = f"{RUN_MARKER}={marker}".encode() + b"\0"
    found = []
    if candidates is None:
        candidates = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    for pid in candidates:
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if needle in handle.read() + b"\0":
                    found.append(pid)
        except OSError:
            continue
    return found


def run_processes(root: int, marker: str = "") -> list:
    """The processes of the run under `root` (the guard): those in its session or in a session an
    ansible-playbook process (a worker) leads; and, given the run's marker, its orphans outside the tree (not
    the daemons the run started: a daemon leads its own session, or lives in one whose leader lives)."""
    table = process_table()
    tree = process_tree(root, table)
    sessions = {tree.get(root)}
    orphans = {}
    # Every process that carries the run's marker descends from `root` (the guard, or the warm run's server, gives
    # it to the run's first process), so none started before it: only the environments of processes outside the
    # tree that started since are read (reading every process's was most of the scan, at each run's end).
    since = table[root][2] if root in table else None
    candidates = [pid for pid, found in table.items()
                  if pid not in tree and (since is None or found[2] >= since)]
    for pid in marked_processes(marker, candidates) if marker else []:
        orphans[pid] = table[pid][1]
    for pid, session in [*tree.items(), *orphans.items()]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if b"ansible-playbook" in handle.read():
                    sessions.add(session)
        except OSError:
            continue
    mine = [pid for pid, session in tree.items() if session in sessions]
    return mine + [pid for pid, session in orphans.items()
                   if session in sessions or proc_stat(session) is None]


def freeze_and_kill(find: Callable[[], set]) -> list:
    """SIGSTOPs what find() returns (again until it returns nothing new: a stopped process cannot fork), then
    SIGKILLs them all. Returns the pids signalled."""
    stopped: set = set()
    while True:
        new = find() - stopped
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
        stopped |= new
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return sorted(stopped)


def kill_tree(root: int, include_root: bool = True, marker: str = "") -> list:
    """Freezes then kills the run's processes under `root` (and its marked orphans, given the run's marker)."""
    me = os.getpid()

    def find() -> set:
        found = set(run_processes(root, marker)) - {me}
        if not include_root:
            found.discard(root)
        return found

    return freeze_and_kill(find)


# The guard's child runs ansible-playbook in the guard's own interpreter when that is the interpreter its script
# names (a virtualenv's console script): no second interpreter start, and no teardown of ansible-core's modules
# and heap at its exit (about 0.1 s of CPU after the last task: run_script ends with os._exit once the output is
# flushed and the atexit handlers ran). Any other command is exec'd as before.


def in_process_script(command: str) -> str | None:
    """The path of `command` (found as execvp finds it) when it is a Python script whose #! line names exactly this
    interpreter (sys.executable), else None."""
    candidates = [command] if os.sep in command else [
        os.path.join(folder or ".", command) for folder in os.environ.get("PATH", os.defpath).split(os.pathsep)]
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            try:
                with open(path, "rb") as handle:
                    first = handle.readline(4096).strip()
            except OSError:
                return None
            if first == b"#!" + os.fsencode(sys.executable):
                return path
            return None
    return None


def run_script(path: str, argv: list) -> None:
    """Runs the script at `path` as __main__ with argv (argv[0] becomes its path, as when the kernel starts it) and
    ends the process with its exit code (exit_as_main)."""
    import runpy

    sys.argv = [path, *argv[1:]]
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    exit_as_main(lambda: runpy.run_path(path, run_name="__main__"))


def exit_as_main(main: Any) -> None:
    """Runs main() as Python's top level runs a program and ends the process with its exit code: SystemExit's (a
    message is printed, exit 1), an uncaught exception's traceback (exit 1); non-daemon threads joined, output
    flushed, atexit handlers run, then os._exit, skipping the interpreter's teardown."""
    import atexit
    import threading
    import traceback

    code = 0
    try:
        main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # as Python's own top level: the traceback on stderr, exit 1
        traceback.print_exc()
        code = 1
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120
    atexit._run_exitfuncs()
    os._exit(code & 0xFF)


# The guard: run as `python <private_data_dir>/guard.py <parent pid> <argv...>` in place of ansible-playbook, or
# forked from `runbook` in the pty's child (forked_guard.py). It asks the kernel for SIGTERM when its parent (the
# runbook process) dies, even by SIGKILL (PR_SET_PDEATHSIG), marks its child's environment (RUN_MARKER: how it finds
# the run's orphans, as it is no subreaper), runs the command, and on that signal (or SIGTERM/SIGINT from anyone)
# kills the run's processes: ansible-playbook, its workers and the modules they run (not the daemons the run started).
def guard_main(parent: int, argv: list, marker: str, script_in_child: bool = True, prctl: Any = None) -> int:
    """The guard's life; returns its exit code. `marker` is the run's private data dir (one run's own).
    script_in_child: a cold start may run a script of this interpreter in the child (run_script); a guard forked
    from `runbook` passes False (its modules are `runbook`'s, not a fresh interpreter's: the child execs), and
    libc's prctl found before the fork (no dynamic loader in the fork: warm/forked_guard.py)."""
    if prctl is None:
        import ctypes  # here, where prctl is called: the guard's only use of it

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    serving = []  # the zygote's run server serving this run (warm_start), once it serves; else the run is our child

    def stop(signum: int, frame: Any) -> None:
        if serving:  # the warm run's processes first: they are not below this guard
            kill_warm_server(serving[0].record(), marker)
        kill_tree(os.getpid(), include_root=False, marker=marker)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        return 1  # the parent died before the request: nothing started
    script = in_process_script(argv[0])
    warm = warm_start(argv, script, marker)
    if warm is not None:
        serving.append(warm)
        # The run server ended what was left of the run (below it, and marked) before it sent the status: no second
        # scan of /proc here. None: the run server was killed; end what is left of the run, and report it killed.
        status = warm.wait()
        if status is None:
            kill_warm_server(warm.record(), marker)
            kill_tree(os.getpid(), include_root=False, marker=marker)
            status = signal.SIGKILL
    else:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.environ[RUN_MARKER] = marker
            try:
                if script is None or not script_in_child:
                    os.execvp(argv[0], argv)
                run_script(script, argv)
            finally:
                os._exit(127)
        status = os.waitpid(pid, 0)[1]
        kill_tree(os.getpid(), include_root=False, marker=marker)  # nothing of the run outlives ansible-playbook
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


_GUARD_MAIN = """
sys.exit(guard_main(int(sys.argv[1]), sys.argv[2:], os.path.dirname(os.path.abspath(sys.argv[0]))))
"""


GUARD_FUNCTIONS = ("proc_stat", "process_table", "process_tree", "marked_processes", "run_processes",
                   "freeze_and_kill", "kill_tree", "in_process_script", "run_script", "exit_as_main",
                   "process_start_time", "warm_start", "write_start_record", "kill_warm_server", "guard_main")


# The guard's own imports: a fresh interpreter per run, so only what its functions call (issue 19: typing and pathlib
# cost about 6 ms of its start). Annotations stay unevaluated (the __future__ import), so the functions copied
# from this module need no typing names; tests/unit/test_guard_source.py checks what the guard loads.
GUARD_IMPORTS = ("from __future__ import annotations", "import json, os, signal, sys")


def guard_source() -> str:
    functions = [globals()[name] for name in GUARD_FUNCTIONS]
    return "\n".join([*GUARD_IMPORTS,
                      f"RUN_MARKER = {RUN_MARKER!r}", f"WARM_ENV = {WARM_ENV!r}", f"START_FILE = {START_FILE!r}",
                      *top_level_sources(functions), _GUARD_MAIN])


def top_level_sources(functions: List[Callable[..., Any]]) -> List[str]:
    """Each function's source as inspect.getsource gives it, for functions defined at the top of this module: from
    its `def` line to the line before the next line that starts at column 0, blank lines dropped at its end.
    inspect.getsource tokenizes every function (about 10 ms a run, in every run's `runbook` process: issue 19);
    tests/unit/test_guard_source.py checks the two give the same text for every function the guard is built from."""
    lines = Path(__file__).read_text(encoding="utf-8").splitlines(keepends=True)
    sources = []
    for function in functions:
        start = function.__code__.co_firstlineno - 1
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t"):
            end += 1
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        sources.append("".join(lines[start:end]))
    return sources


# ---------------------------------------------------------------- the warm start (erlmcp_dr.warm)

# The guard hands ansible-playbook to the user's zygote (a process that already imported ansible-core) when it can:
# the zygote's run server forks it, so it is NOT below the guard. The guarantees hold another way: the run server
# watches the guard (a pidfd) and ends the run's processes when the guard goes, by SIGKILL included; the guard's
# own stop (its parent's death, a cancel) ends the run server's tree first; a cancel or the next run's sweep reads
# the run server from START_FILE. The forked process carries the run's command line and marker (warm/title.py), so
# the sessions-and-marker rule finds its workers and orphans as a cold run's. docs/design.md, "The run guard ...".
WARM_ENV = "ERLMCP_DR_WARM"
START_FILE = "start.json"  # in the private data dir: how ansible-playbook started (warm: its run server; cold: why)


def warm_start(argv: list, script: Optional[str], marker: str) -> Any:
    """The zygote's WarmRun for this run, or None (recorded in START_FILE with the reason) to start it cold."""
    fallback = False  # True: the warm start was wanted and failed (the run says so); False: not asked for
    if script is None:
        reason = f"{argv[0]} is not a Python script of this interpreter ({sys.executable})"
    elif os.environ.get(WARM_ENV, "1").strip() == "0":
        reason = f"{WARM_ENV}=0"
    else:
        fallback = True
        try:
            from erlmcp_dr.warm import client

            run = client.start_run(argv, script, marker)
        except Exception as exc:  # any failure of the warm path: the cold start, said so
            reason = f"{exc}" if type(exc).__name__ == "Unavailable" else f"{type(exc).__name__}: {exc}"
        else:
            write_start_record(marker, run.record())
            return run
    write_start_record(marker, {"mode": "cold", "reason": reason, "fallback": fallback})
    return None


def write_start_record(private_data_dir: str, record: Mapping[str, Any]) -> None:
    path = os.path.join(private_data_dir, START_FILE)
    fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(record), handle)
    os.rename(path + ".new", path)


def start_record(private_data_dir: Path) -> Dict[str, Any]:
    """What the guard wrote in START_FILE ({} when nothing: the guard did not get that far)."""
    return paths.read_json_object(Path(private_data_dir) / START_FILE)


def kill_warm_server(record: Mapping[str, Any], marker: str) -> list:
    """Freezes then kills a warm run's server and the run's processes below it (the same rule as the guard's), when
    the record names a live run server (pid and start time: never a process that reused its pid)."""
    pid = record.get("pid")
    if record.get("mode") != "warm" or not isinstance(pid, int) or pid <= 0:
        return []
    if process_start_time(pid) != record.get("pid_start_time"):
        return []
    return kill_tree(pid, marker=marker)


# The guards this process wrote (guarded), by script path: the pid of the one forked from this process
# (warm/forked_guard.py) once spawned, else 0. A forked guard's command line is this process's, rewritten as far
# as its room allows: guard_pids finds it by this pid instead.
_GUARD_SCRIPTS: Dict[str, int] = {}


def guarded(command: List[str], private_data_dir: Path) -> List[str]:
    """`command` run under the guard, written as <private_data_dir>/guard.py (0600)."""
    script = private_data_dir / "guard.py"
    paths.write_private_unsynced(script, guard_source())  # the private data dir: removed with its run
    _GUARD_SCRIPTS[str(script)] = 0
    return [sys.executable, str(script), str(os.getpid()), *command]


def is_guard_script(path: str) -> bool:
    return path in _GUARD_SCRIPTS


def guard_pids(private_data_dir: Path) -> List[int]:
    """This process's children running a run's guard (their command line names its private data dir, or it was
    forked from this process)."""
    me, needle = os.getpid(), str(private_data_dir).encode()
    forked = _GUARD_SCRIPTS.get(str(private_data_dir / "guard.py"))
    found = [forked] if forked and (proc_stat(forked) or (0,))[0] == me else []
    for pid in process_tree(me):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if pid != me and pid not in found and (proc_stat(pid) or (0,))[0] == me and needle in cmdline:
            found.append(pid)
    return found


class Stopper:
    """ansible-runner's cancel_callback. On SIGTERM/SIGINT (when run from the main thread) or past the run's
    timeout, it kills the guard's whole process tree itself: ansible-runner's own SIGKILL of the guard's
    process group would miss the workers, which run in sessions of their own."""

    def __init__(self, private_data_dir: Path, timeout: Optional[int]) -> None:
        from ansible_runner.utils import signal_handler

        self.private_data_dir = private_data_dir
        self.signalled = signal_handler()  # None outside the main thread
        self.deadline = time.monotonic() + timeout if timeout else None
        self.timed_out = False

    def __call__(self) -> bool:
        self.timed_out = self.deadline is not None and time.monotonic() > self.deadline
        if not (self.timed_out or (self.signalled is not None and self.signalled())):
            return False
        marker = os.path.abspath(self.private_data_dir)
        kill_warm_server(start_record(self.private_data_dir), marker)  # not below the guard: first
        for pid in guard_pids(self.private_data_dir):
            kill_tree(pid, marker=marker)
        return True


# ---------------------------------------------------------------- closing the finished child


@functools.lru_cache(maxsize=1)
def closing_spawn() -> type:
    """pexpect.spawn whose close() of a child that has already exited skips ptyprocess's `delayafterclose`.

    ptyprocess sleeps 0.1 s after closing the pty "to give the kernel time to update process status", then
    checks that status. ansible-runner closes its child only after its loop saw it exit (or after killing it),
    so that sleep is 0.1 s at the end of every run for nothing. A child still alive is closed as before
    (sleep, then terminated)."""
    import pexpect

    class ClosingSpawn(pexpect.spawn):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _SPAWNED.child = self  # this thread's run: finish_abandoned_child() finds it
            # pexpect sleeps 0.1 ms after every read (each is 0.3-0.5 ms of wall here, the last one after the run's
            # end): its reader waits in poll() for the output anyway.
            self.delayafterread = None

        def _spawnpty(self, args: List[Any], **kwargs: Any) -> Any:
            from erlmcp_dr.warm import forked_guard

            command = [os.fsdecode(arg) for arg in args]
            if not forked_guard.wanted(command, kwargs.get("env")):
                return super()._spawnpty(args, **kwargs)
            kwargs["preexec_fn"] = forked_guard.preexec(command, kwargs.get("env"), kwargs.get("preexec_fn"))
            process = super()._spawnpty(args, **kwargs)
            _GUARD_SCRIPTS[command[1]] = process.pid
            return process

        def close(self, force: bool = True) -> None:
            if not self.ptyproc.closed and not self.isalive():
                self.ptyproc.delayafterclose = 0
            super().close(force=force)
            if len(self.args) > 1:
                _GUARD_SCRIPTS.pop(os.fsdecode(self.args[1]), None)

    return ClosingSpawn


_SPAWNED = threading.local()


def finish_abandoned_child() -> Optional[int]:
    """When ansible-runner stopped reading its ansible-playbook (its output could not be written: a full disk),
    the playbook is not cut off mid-change: its output is read and dropped until it exits. Returns its exit
    status (None when there was no child left running)."""
    child = getattr(_SPAWNED, "child", None)
    _SPAWNED.child = None
    if child is None or child.ptyproc.closed:
        return None
    import pexpect

    child.logfile_read = None
    try:
        child.expect(pexpect.EOF, timeout=None)
    except pexpect.ExceptionPexpect:
        log.debug("reading the abandoned ansible-playbook to its end failed", exc_info=True)
    child.close()
    return child.exitstatus


def close_exited_children_at_once() -> None:
    """Gives ansible-runner's Runner (its module's `pexpect`, nobody else's) closing_spawn() as pexpect.spawn."""
    import ansible_runner.runner as runner_module

    current = runner_module.pexpect
    if getattr(current, "spawn", None) is closing_spawn():
        return
    proxy = types.ModuleType(current.__name__, current.__doc__)
    proxy.__dict__.update({key: value for key, value in vars(current).items() if not key.startswith("__")})
    proxy.spawn = closing_spawn()
    runner_module.pexpect = proxy
