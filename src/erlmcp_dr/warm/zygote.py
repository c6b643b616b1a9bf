"""The zygote: a per-user process that has imported ansible-core, ansible-runner's callback, the drivers and this
package, and forks a run server for each run a guard asks for.

    python -m erlmcp_dr.warm.zygote <socket> <key> <ready fd> <idle seconds> <room>

Started by a run's guard (client.start_zygote) with the run's environment reduced to `fingerprint.zygote_env` and
the run's working directory, detached (its own session, re-parented away from the run). It never reads a request:
on each connection it checks the peer's uid (SO_PEERCRED) and forks; the **run server** (that fork) reads the
request, so the run's argv and environment (secrets included) exist only in the run server and in the
**ansible-playbook process** it forks (become_run), never in the zygote's memory. The run server watches the guard
(a pidfd) and its ansible-playbook process: when the guard goes, it ends the run's processes (guard.kill_tree, the
same sessions-and-marker rule as the guard's); when ansible-playbook ends, it ends what is left of the run and sends
the guard the exit status.

The zygote exits after `idle` seconds without a run, when its socket is removed or replaced (a newer zygote, or
`runbook warm stop`), or on SIGTERM. It stays single-threaded: it forks.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import json
import os
import re
import select
import signal
import socket
import sys
import time
from typing import Any, Dict, Iterator, List, Mapping, NoReturn, Optional, Set, Tuple

from erlmcp_dr.warm import fingerprint, title, wire

ACCEPT_TICK = 1.0  # seconds between checks of the idle time, the socket file and exited run servers

# The zygote's environment and working directory at its start, before any run and before ansible.constants read its
# settings from them: a forked run reads again only the settings whose sources differ (refresh_ansible_settings).
START_ENV = dict(os.environ)
START_CWD = os.getcwd()

# What a cold ansible-playbook imports before its first task (measured: docs/speed-warm.md), and the drivers the
# collection's action plugins import when loaded. Not ansible-runner's awx_display callback: its import reads the
# run's environment (AWX_ISOLATED_DATA_DIR) and patches Display: each run imports it, as a cold run does.
PRELOAD = (
    "ansible.cli.playbook",
    "ansible.executor.playbook_executor",
    "ansible.executor.task_queue_manager",
    "ansible.executor.task_executor",
    "ansible.executor.process.worker",
    "ansible.executor.module_common",
    "ansible.plugins.strategy.linear",
    "ansible.plugins.action.normal",
    "ansible.plugins.action.set_fact",
    "ansible.plugins.action.set_stats",
    "ansible.plugins.action.assert",
    "ansible.plugins.action.debug",
    "ansible.plugins.callback.default",
    "ansible.plugins.connection.local",
    "ansible.plugins.shell.sh",
    "ansible.plugins.inventory.yaml",
    "ansible.plugins.inventory.ini",
    "ansible.plugins.inventory.host_list",
    "ansible.plugins.vars.host_group_vars",
    "ansible.plugins.filter.core",
    "ansible.plugins.test.core",
    "ansible.plugins.lookup.env",
    "ansible.playbook",
    "ansible.playbook.role",
    "ansible.vars.manager",
    "ansible.inventory.manager",
    "psycopg",
    "redis",
    "yaml",
    "erlmcp_dr.guard",
)


PRELOAD_ENV = "ERLMCP_DR_WARM_PRELOAD"  # more modules to import (comma-separated): a site's own plugins' libraries

# A CLI zygote (kind "cli") serves whole `runbook run` commands (erlmcp_dr/launch.py): what the CLI imports before it
# starts a run's guard (measured: about 0.1 s of every `runbook run`), the collection's parameter checks included.
CLI_PRELOAD = (
    "erlmcp_dr.cli",
    "erlmcp_dr.runner",
    "erlmcp_dr.audit",
    "erlmcp_dr.params",
    "erlmcp_dr.catalog",
    "erlmcp_dr.reporting.html_report",
    "erlmcp_dr.drill.cli",
    "erlmcp_dr.watch.cli",
    "erlmcp_dr.warm.forked_guard",  # with ctypes: the run's guard is a fork of the command (forked_guard.prepare)
    "ansible_runner",
    "ansible_runner.config.runner",
    "ansible_runner.runner",
    "ansible_runner.streaming",
    "pexpect",
    "yaml",
    "ansible_collections.erlmcp.dr.plugins.module_utils._common.runbook_params",
    "ansible_collections.erlmcp.dr.plugins.module_utils._lock.store",
)
KINDS = ("playbook", "cli")


def preload(kind: str = "playbook") -> List[str]:
    """Imports PRELOAD, or for a CLI zygote CLI_PRELOAD (a module that is missing is skipped: the run imports it, or
    fails, as a cold run would). Returns the data files read besides modules (the Ansible config file): the manifest
    lists them."""
    import importlib

    extra = [name.strip() for name in os.environ.get(PRELOAD_ENV, "").split(",") if name.strip()]
    if kind == "cli":
        from erlmcp_dr import paths

        paths.ensure_collection_importable()  # as the CLI does before it imports the collection's parameter checks
    for name in (*(CLI_PRELOAD if kind == "cli" else PRELOAD), *extra):
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the run will import it itself and report what a cold run reports
            print(f"zygote: not preloaded: {name}: {exc}", file=sys.stderr)
    if kind == "cli":
        from erlmcp_dr import cli
        from erlmcp_dr.warm import forked_guard

        cli.prebuild_parser()
        forked_guard.prepare()
        return []
    from erlmcp_dr.warm import immutable_copies

    immutable_copies.install()
    from erlmcp_dr.warm import template_code_cache

    template_code_cache.install()  # filled later, while the zygote waits for runs (template_fill_steps)
    _drop_local_tmp()
    data_files = warm_ansible_caches()
    from ansible import constants

    config = getattr(constants.config, "_config_file", None)
    return data_files + ([config] if isinstance(config, str) else [])


def warm_ansible_caches() -> List[str]:
    """What every ansible-playbook start reads besides its imports, done once here (measured: most of a warm run's
    own CPU before its first task): ansible.builtin's routing table (a 376 KB runtime.yml) and each collection's
    meta/runtime.yml, the enabled inventory plugins with their documentation (their settings' definitions), and the
    collections' action, filter and module_utils code with the drivers they import. Returns the data files read
    (the manifest lists them: a change makes the zygote stale). The collection finder it installs is removed in
    each forked run (forget_collection_finder), which installs its own as a cold run does."""
    import importlib
    import pkgutil

    from ansible.plugins.loader import init_plugin_loader
    from ansible.utils.collection_loader._collection_finder import _get_collection_metadata

    init_plugin_loader()
    files = []
    for collection in ("ansible.builtin", "erlmcp.dr"):
        try:
            _get_collection_metadata(collection)
        except Exception as exc:  # noqa: BLE001 - the run reads it itself, and reports what a cold run reports
            print(f"zygote: no routing metadata for {collection}: {exc}", file=sys.stderr)
    prime_plugin_config_definitions()
    for kind in ("module_utils", "action", "filter"):
        try:
            package = importlib.import_module(f"ansible_collections.erlmcp.dr.plugins.{kind}")
        except ImportError:
            continue
        # walk_packages: module_utils is a tree of per-system packages (_postgres, _redis, ...), not one flat folder.
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            try:
                importlib.import_module(info.name)
            except Exception as exc:  # noqa: BLE001
                print(f"zygote: {info.name} not preloaded: {exc}", file=sys.stderr)
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name.count(".") == 2 and name.startswith("ansible_collections.") and isinstance(path, str) \
                and os.path.isabs(path):
            files.append(os.path.join(os.path.dirname(path), "meta", "runtime.yml"))
    from ansible import config as config_package

    files.append(os.path.join(os.path.dirname(config_package.__file__), "ansible_builtin_runtime.yml"))
    return files


# Every ansible-playbook run loads, in its main process, every connection, shell and become plugin it finds
# (PlaybookExecutor.run: "preload become/connection/shell to set config defs cached"), every callback plugin
# (TaskQueueManager.load_callbacks), the enabled inventory plugins, the vars plugins and the fact cache's plugin, and
# the plugin loader parses each one's DOCUMENTATION (YAML with its doc fragments) for its settings' definitions.
# Measured on the warm path: about half of the forked ansible-playbook's time before its first task
# (docs/speed-failover.md). Done here once, the modules and definitions are in every fork's memory, where the run's
# own loaders find them (their module cache and the config manager's definitions); every file read for them is a
# module, so the manifest lists it.
PRIMED_LOADERS = ("connection", "shell", "become", "vars")


def prime_plugin_config_definitions() -> None:
    """Loads what PRIMED_LOADERS' all(), the builtin and enabled callbacks, the enabled inventory plugins and the fact
    cache's plugin load in a run, then records the plugins whose documentation defines no setting as having none
    (settingless_recorded). ansible-runner's awx_display is not a builtin callback: its import reads the run's
    environment (see PRELOAD), each run imports it."""
    from ansible import constants
    from ansible.plugins import callback as builtin_callbacks
    from ansible.plugins import loader as plugin_loader

    loads = [(kind, None) for kind in PRIMED_LOADERS]
    loads += [("callback", name) for name in (*builtin_callback_names(os.path.dirname(builtin_callbacks.__file__)),
                                              *(constants.CALLBACKS_ENABLED or ()))]
    loads += [("inventory", name) for name in constants.INVENTORY_ENABLED]
    loads += [("cache", constants.CACHE_PLUGIN)]
    with settingless_recorded():
        for kind, name in loads:
            loader = getattr(plugin_loader, f"{kind}_loader")
            try:
                list(loader.all(class_only=True)) if name is None else loader.get(name, class_only=True)
            except Exception as exc:  # noqa: BLE001 - the run loads it itself, and reports what a cold run reports
                print(f"zygote: {kind} plugin(s) {name or ''} not primed: {exc}", file=sys.stderr)


@contextlib.contextmanager
def settingless_recorded() -> Iterator[None]:
    """While it lasts, each plugin whose documentation the loader reads and finds no setting in (oneline, the ini
    inventory, host_group_vars, the memory cache: ansible-core keeps no definitions for them, so every run parses their
    YAML again) is then recorded with an empty set of definitions: the run's loader finds it defined and parses
    nothing, and every lookup of its settings gives {} as before. A plugin whose documentation fails to load is left
    as it was."""
    from ansible import constants
    from ansible.plugins.loader import PluginLoader, get_plugin_class

    read: List[Tuple[str, str]] = []
    original = PluginLoader.__dict__["_load_config_defs"]

    def recording(self: Any, name: str, module: Any, path: str) -> None:
        original(self, name, module, path)
        if self.class_name:
            read.append((get_plugin_class(self.class_name), name))

    PluginLoader._load_config_defs = recording
    try:
        yield
    finally:
        PluginLoader._load_config_defs = original
    for kind, name in read:
        if kind in constants.CONFIGURABLE_PLUGINS and not constants.config.has_configuration_definition(kind, name):
            constants.config.initialize_plugin_configuration_definitions(kind, name, {})


def builtin_callback_names(folder: str) -> List[str]:
    return sorted(name[:-3] for name in os.listdir(folder) if name.endswith(".py") and name != "__init__.py")


def forget_collection_finder() -> None:
    """Removes the zygote's collection finder (its imported collection packages stay in sys.modules, their routing
    metadata with them), so the run's own init_plugin_loader installs one without "already configured"."""
    from ansible.utils.collection_loader import AnsibleCollectionConfig
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

    _AnsibleCollectionFinder._remove()
    AnsibleCollectionConfig._on_collection_load = type(AnsibleCollectionConfig._on_collection_load)()


def _drop_local_tmp() -> None:
    """ansible.constants made a temporary folder (DEFAULT_LOCAL_TMP, with an atexit clean-up) named after the
    zygote's pid; every run makes its own (refresh_ansible_settings), so the zygote's goes now."""
    import shutil

    from ansible import constants
    from ansible.config import manager

    cleanup = getattr(manager, "cleanup_tmp_file", None)
    if cleanup is not None:
        atexit.unregister(cleanup)
    shutil.rmtree(getattr(constants, "DEFAULT_LOCAL_TMP", "") or "/nonexistent", ignore_errors=True)


def main(argv: List[str]) -> None:
    socket_path, key, ready_fd, idle = argv[0], argv[1], int(argv[2]), float(argv[3])
    kind = argv[5] if len(argv) > 5 and argv[5] in KINDS else "playbook"
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    extra = preload(kind)
    freeze_imported_objects()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _bind(server, socket_path)
    server.listen(64)
    server.settimeout(ACCEPT_TICK)
    bound = os.stat(socket_path).st_ino
    _write_info(socket_path, key, extra, kind)
    try:
        os.unlink(wire.beside(socket_path, wire.STARTING_SUFFIX))  # a CLI zygote started in the background serves now
    except OSError:
        pass
    try:
        os.write(ready_fd, f"{os.getpid()}\n".encode())
    except OSError:  # the guard that started it is gone (killed while it waited): the next run uses this zygote
        pass
    os.close(ready_fd)
    last_run = time.monotonic()
    filling = template_fill_steps() if kind == "playbook" else None
    try:
        while time.monotonic() - last_run < idle and _still_ours(socket_path, bound):
            _reap()
            if filling is not None and not select.select([server], [], [], 0)[0]:
                filling = _fill_step(filling)
                continue
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            last_run = time.monotonic()
            _fork_run_server(server, conn, key)
    finally:
        server.close()
        if _still_ours(socket_path, bound):
            for path in (socket_path, info_path(socket_path)):
                try:
                    os.unlink(path)
                except OSError:
                    pass


def freeze_imported_objects() -> None:
    """Moves every object the zygote holds (its imports, caches, settings) out of the garbage collector's reach.

    A forked run inherits them all, about 98,000 objects, and its first full collection walked every one: measured,
    55 ms of each warm ansible-playbook's start, before its first task, and each walk writes to the objects' headers,
    which copies the pages a fork shares with the zygote. They are frozen (gc.freeze, Python's own remedy for
    pre-forking servers) after one collection has removed the zygote's own garbage. The cost: a cycle of those
    objects that a run drops is freed when the run's process ends, not by the run's collector; a run lives seconds."""
    gc.collect()
    gc.freeze()


def template_fill_steps() -> Iterator[int]:
    """Compiles the collection's templates and conditionals into the shared cache (template_code_cache), a batch per
    step, so that every run forked afterwards finds them compiled. Taken only while no run waits: a run that comes
    first is served at once, with what is compiled so far."""
    from erlmcp_dr.warm import template_code_cache

    if not template_code_cache.install():
        return
    templates, conditionals = template_code_cache.collection_texts(template_code_cache.collection_folders())
    yield from template_code_cache.fill_steps(templates, conditionals)


def _fill_step(filling: Iterator[int]) -> Optional[Iterator[int]]:
    """One step of the cache's filling; None when it is done (or failed: a run then compiles what it needs)."""
    try:
        next(filling)
    except StopIteration:
        gc.freeze()  # the compiled templates join what forks never collect (freeze_imported_objects)
        return None
    except Exception as exc:  # noqa: BLE001 - the cache is an optimisation; the zygote's log says why it stopped
        print(f"zygote: templates not precompiled: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    return filling


def info_path(socket_path: str) -> str:
    return wire.beside(socket_path, wire.INFO_SUFFIX)


def _bind(server: socket.socket, socket_path: str) -> None:
    """Binds under a temporary name and renames it into place: a client never connects to a half-ready zygote,
    and a zygote still serving under that name is replaced, not refused."""
    staging = f"{socket_path}.{os.getpid()}"
    try:
        os.unlink(staging)
    except FileNotFoundError:
        pass
    old_umask = os.umask(0o077)
    try:
        server.bind(staging)
    finally:
        os.umask(old_umask)
    os.rename(staging, socket_path)


def _write_info(socket_path: str, key: str, extra: List[str], kind: str) -> None:
    from erlmcp_dr.guard import process_start_time

    info = {"pid": os.getpid(), "pid_start_time": process_start_time(os.getpid()), "key": key, "kind": kind,
            "python": sys.executable, "started_at": time.time(),
            "files": fingerprint.manifest(fingerprint.loaded_files(extra))}
    staging = f"{info_path(socket_path)}.{os.getpid()}.new"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle)
    os.rename(staging, info_path(socket_path))


def _still_ours(socket_path: str, inode: int) -> bool:
    try:
        return os.stat(socket_path).st_ino == inode
    except OSError:
        return False


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _fork_run_server(server: socket.socket, conn: socket.socket, key: str) -> None:
    try:
        allowed = wire.peer_uid_is_mine(conn)
    except OSError:
        allowed = False
    if not allowed:  # the folder is 0700, so this is a second line: never serve another user
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        server.close()
        try:
            serve_run(conn, key)
        finally:
            os._exit(70)
    conn.close()


# ---------------------------------------------------------------- the run server (a fork of the zygote, one per run)


def serve_run(conn: socket.socket, key: str) -> NoReturn:
    """One request: an ansible-playbook process for a run's guard (kind "playbook"), or a whole `runbook` command for
    the CLI's launcher (kind "cli"). The run server forks it, watches it and the process that asked (a pidfd), and
    sends the asker its wait status."""
    from erlmcp_dr.guard import kill_tree, process_start_time

    os.setsid()  # the run's own session: its ansible-playbook process is in it, as a cold one is in the guard's
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    conn.settimeout(None)
    message, fds = wire.receive(conn)
    if message.get("key") != key:
        wire.send(conn, {"error": f"this zygote serves key {key}, the run's is {message.get('key')}"})
        os._exit(0)
    cli = message.get("kind") == "cli"
    marker = str(message.get("marker") or "")
    asker_fd = os.pidfd_open(wire.peer_credentials(conn)[0])
    child = os.fork()
    if child == 0:
        os.close(asker_fd)
        conn.close()
        (become_cli if cli else become_run)(message, fds)
    for fd in fds:
        os.close(fd)
    child_fd = os.pidfd_open(child)
    wire.send(conn, {"server": os.getpid(), "server_start_time": process_start_time(os.getpid()), "child": child})
    watch = select.poll()
    for fd in (asker_fd, child_fd, conn.fileno()):
        watch.register(fd, select.POLLIN | select.POLLHUP)
    while True:
        ready = {fd for fd, _ in watch.poll()}
        if child_fd in ready:
            _, status = os.waitpid(child, 0)
            if not cli:  # a `runbook` command's daemons (a drill's restarted server) outlive it, as a cold one's do
                kill_tree(os.getpid(), include_root=False, marker=marker)  # nothing of the run outlives it
            try:
                wire.send(conn, {"status": status})
            finally:
                os._exit(0)
        if cli:
            # The launcher died (`runbook` killed, even by SIGKILL): so does the command, as a cold `runbook` would;
            # its run's guard then ends the run (PR_SET_PDEATHSIG, guard.py).
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
            os._exit(0)
        # The guard died or closed the connection: it was killed (by `runbook`'s death, a cancel, a timeout).
        # ansible-playbook is stopped at once (no next task starts while /proc is scanned), then the run's tree.
        try:
            os.kill(child, signal.SIGSTOP)
        except OSError:
            pass
        kill_tree(os.getpid(), include_root=False, marker=marker)
        os._exit(0)


def become_run(message: Dict[str, Any], fds: List[int]) -> NoReturn:
    """In the forked ansible-playbook process: the run's stdio, environment, directory, umask, signals, command line
    and marker, Ansible's settings read again from that environment, then ansible-playbook's script as the cold
    guard's child runs it (guard.run_script: same exit, flush and atexit handling)."""
    from erlmcp_dr.guard import run_script

    try:
        inherited = take_request(message, fds)  # the zygote's environment: what its settings may have been read from
        argv = [str(arg) for arg in message["argv"]]
        title.set_command_line(["ansible-playbook", f"[warm run {message['marker']}]", *argv[1:]])
        title.set_run_marker(str(message["marker"]))
        _reopen_std_streams()
        refresh_ansible_settings(inherited)
        forget_collection_finder()
        take_parsed_inventory()
    except BaseException:  # noqa: BLE001 - reported on the run's stderr, as a failed start
        import traceback

        traceback.print_exc()
        os._exit(70)
    run_script(str(message["script"]), argv)
    os._exit(70)  # run_script never returns


def take_parsed_inventory() -> None:
    """A composed run's child: the inventory's files as the composed run parsed them (warm/parsed_inventory.py). A
    file that cannot be used is only a lost shortcut: ansible-playbook parses the inventory as a cold run does."""
    from erlmcp_dr.warm import parsed_inventory

    try:
        parsed_inventory.install(dict(os.environ))
    except Exception:  # noqa: BLE001 - never the run's failure
        pass


def become_cli(message: Dict[str, Any], fds: List[int]) -> NoReturn:
    """In the forked `runbook` command: the launcher's stdio, environment, directory, umask, command line and
    signals (Ctrl-C is a KeyboardInterrupt, as in a cold `runbook`), then the CLI's main with its argv, ended as
    a console script ends (guard.exit_as_main). Its exit status is the command's."""
    from erlmcp_dr.guard import exit_as_main

    try:
        take_request(message, fds)
        argv = [str(arg) for arg in message["argv"]]
        signal.signal(signal.SIGINT, signal.default_int_handler)
        title.set_command_line([sys.executable, *argv])
        _reopen_std_streams()
        sys.argv = argv
        from erlmcp_dr.cli import main as cli_main
    except BaseException:  # noqa: BLE001 - reported on the command's stderr, as a failed start
        import traceback

        traceback.print_exc()
        os._exit(70)
    exit_as_main(lambda: sys.exit(cli_main()))
    os._exit(70)  # exit_as_main never returns


def take_request(message: Dict[str, Any], fds: List[int]) -> Dict[str, str]:
    """The requester's stdin, stdout and stderr, environment, working directory and umask; default signals. Returns
    the environment this process had (the zygote's)."""
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    inherited = dict(os.environ)
    os.environ.clear()
    os.environ.update({str(name): str(value) for name, value in message["env"].items()})
    os.chdir(message["cwd"])
    os.umask(int(message["umask"]))
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    return inherited


_ZYGOTE_STREAMS: List[Any] = []  # the zygote's own sys.std* (fds 0-2 with closefd): kept so nothing closes 0-2


def _reopen_std_streams() -> None:
    """sys.stdin/stdout/stderr as Python makes them at start for these fds: line-buffered on a tty (ansible-runner's
    pty) or unbuffered with PYTHONUNBUFFERED, stderr always line-buffered. The zygote's were made for /dev/null."""
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        _ZYGOTE_STREAMS.append(old)
        if fd == 0:
            stream = io.TextIOWrapper(open(fd, "rb", closefd=False), encoding=old.encoding, errors=old.errors)
        else:
            raw = open(fd, "wb", buffering=0 if unbuffered else -1, closefd=False)
            stream = io.TextIOWrapper(raw, encoding=old.encoding, errors=old.errors, write_through=unbuffered,
                                      line_buffering=fd == 2 or os.isatty(fd))
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


# A setting's value is a function of its sources (ansible.config.manager.get_config_value_and_origin): the config
# file (the zygote's key pins it), environment variables, a default that may be a template over other settings, and
# for path types the working directory (a relative value is resolved against it). Its 'vars' and 'cli' sources are
# read later, per play and from the command line, not here.
PATH_TYPES = frozenset({"path", "pathspec", "pathlist", "tmppath", "tmp", "temppath"})
TEMP_TYPES = frozenset({"tmppath", "tmp", "temppath"})  # a fresh folder each time it is read: every run its own
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def refresh_ansible_settings(inherited: Optional[Mapping[str, str]] = None,
                             start_env: Optional[Mapping[str, str]] = None,
                             start_cwd: Optional[str] = None) -> List[str]:
    """Ansible's settings read again from this run's environment, as ansible.constants' import reads them, where
    they can differ from the zygote's: those with an environment variable whose value (or absence) differs from the
    zygote's at its start (`start_env`) or as the fork inherited it (`inherited`): the per-run and secret-named ones
    the key leaves out (the run's artifact folder, its fact cache, ANSIBLE_HOST_KEY_CHECKING, ...); each temporary
    folder (DEFAULT_LOCAL_TMP: the run's own); every path when the run's working directory is not the zygote's;
    and a templated default that names a setting read again with another value, or anything but settings and
    ansible.constants' own names. Reading all ~220 of them cost 17 ms of every warm run (issue 19). Returns the
    names read again."""
    from ansible import constants

    start_env = START_ENV if start_env is None else start_env
    environ = os.environ

    def env_differs(name: str) -> bool:
        value = environ.get(name)
        return value != start_env.get(name) or (inherited is not None and value != inherited.get(name))

    definitions = constants.config.get_configuration_definitions()
    namespace = vars(constants)
    cwd_moved = os.getcwd() != (START_CWD if start_cwd is None else start_cwd)
    changed: Set[str] = set()
    read = []
    for setting, definition in definitions.items():
        kind = str(definition.get("type") or "").lower()
        if not (kind in TEMP_TYPES or (cwd_moved and kind in PATH_TYPES)
                or any(env_differs(str(entry.get("name"))) for entry in definition.get("env") or ())
                or _template_depends(definition.get("default"), definitions, namespace, changed)):
            continue
        before = namespace.get(setting, changed)  # `changed` stands for "never set"
        value = constants.config.get_config_value(setting, variables=namespace)
        constants.set_constant(setting, value)
        read.append(setting)
        try:
            if before is changed or before != value:
                changed.add(setting)
        except Exception:  # noqa: BLE001 - a value that cannot be compared counts as changed
            changed.add(setting)
    return read


def _template_depends(default: Any, definitions: Mapping[str, Any], namespace: Mapping[str, Any],
                      changed: Set[str]) -> bool:
    """Whether a default (as ConfigManager.template_default templates it: a string in {{ }}) may render otherwise in
    this run: it names a setting read again with another value, or a name that is neither a setting nor one of
    ansible.constants' own (a filter, a lookup, a test, a keyword: assume it may)."""
    if not (isinstance(default, str) and default.startswith("{{") and default.endswith("}}")):
        return False
    for name in _NAME.findall(_QUOTED.sub(" ", default[2:-2])):
        if name in changed or (name not in definitions and name not in namespace):
            return True
    return False


if __name__ == "__main__":
    main(sys.argv[1:])
