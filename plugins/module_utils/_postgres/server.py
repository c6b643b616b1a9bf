# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host side of the pg_* modules: pg_ctl, pg_controldata, pg_rewind and the config files
of one data directory.

PostgreSQL's binaries refuse to run as root, so when called as root every command runs as
the owner of the data directory (as `become_user: postgres` would).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time


from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import write_atomic
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import PgError
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

DEFAULT_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/pgsql-15/bin", "/usr/local/pgsql/bin")
# A stop is waited for by polling the postmaster.pid file this often (pg_ctl -w polls every 100 ms): writes are
# unavailable from the fence's stop until the promotion, so every poll interval counts.
STOP_POLL_SECONDS = 0.005


class ServerError(PgError):
    """A host-side failure worth showing to the operator as is."""


def find_bin_dir(bin_dir=None):
    """The folder holding pg_ctl: the one given, a known install path, or PATH."""
    candidates = [bin_dir] if bin_dir else list(DEFAULT_BIN_DIRS)
    for folder in candidates:
        if folder and os.path.isfile(os.path.join(folder, "pg_ctl")):
            return folder
    found = None if bin_dir else shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    raise ServerError("pg_ctl not found in %s (set pg_bin_dir)" % (bin_dir or ", ".join(DEFAULT_BIN_DIRS) + " or PATH"))


def data_dir_owner(data_dir):
    try:
        st = os.stat(data_dir)
    except OSError as exc:
        raise ServerError("data directory %s: %s (pg_data_dir)" % (data_dir, exc.strerror)) from None
    return st.st_uid, st.st_gid


def _demote_to(uid, gid):
    def demote():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return demote


def process_state(pid):
    """The state letter of a process per /proc (R, S, Z for a zombie, ...); '' when there is no such process;
    None when this system has no /proc to tell."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (IOError, OSError, IndexError):
        return "" if os.path.isdir("/proc/self") else None


def _accepts_connections(address, port, timeout=0.5):
    """Whether something accepts a TCP connection at address:port (refused or unreachable: False)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def shm_attached(shmid):
    """How many processes are attached to the System V shared memory segment shmid (/proc/sysvipc/shm): 0 when
    the segment is gone; None when this system cannot tell."""
    try:
        with open("/proc/sysvipc/shm") as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        return None
    header = lines[0].split() if lines else []
    if "shmid" not in header or "nattch" not in header:
        return None
    id_col, count_col = header.index("shmid"), header.index("nattch")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > max(id_col, count_col) and fields[id_col] == str(shmid):
            return int(fields[count_col])
    return 0


def _failed(name, rc, out, err):
    return ServerError("%s failed (rc=%s): %s" % (name, rc, (err or out).strip()))


def write_owned(path, content, owner_of, mode=0o600):
    """Write path atomically, owned like owner_of (a data directory), with mode."""
    write_atomic(path, content, mode, owner=data_dir_owner(owner_of))


class Server(object):
    """One PostgreSQL data directory on this host and the binaries that manage it."""

    def __init__(self, data_dir, bin_dir=None, log_file=None):
        self.data_dir = os.path.abspath(data_dir)
        self.bin_dir = find_bin_dir(bin_dir)
        self.log_file = log_file or os.path.join(self.data_dir, "pg_ctl_start.log")

    # -- running commands as the owner
    def spawn(self, name, args, env=None):
        """Start one PostgreSQL binary as the data directory's owner (stdin closed, stdout and stderr piped); the
        Popen. Not AnsibleModule.run_command: it cannot drop to the data directory's owner (preexec_fn) nor stop at a
        deadline, and this engine has no module object."""
        argv = [os.path.join(self.bin_dir, name)] + list(args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        preexec = None
        uid, gid = data_dir_owner(self.data_dir)
        if os.geteuid() == 0 and uid != 0:
            preexec = _demote_to(uid, gid)
            full_env["HOME"] = "/"
        try:
            return subprocess.Popen(  # pylint: disable=ansible-bad-function
                argv, env=full_env, preexec_fn=preexec, cwd="/", stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        except OSError as exc:
            raise ServerError("cannot run %s: %s (expected it in %s: pg_bin_dir)"
                              % (argv[0], exc.strerror, self.bin_dir)) from None

    def run(self, name, args, env=None, timeout=None, check=True):
        """Run one PostgreSQL binary as the data directory's owner; (rc, stdout, stderr)."""
        proc = self.spawn(name, args, env)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise ServerError("%s did not finish within %ss" % (" ".join(proc.args[:2]), timeout)) from None
        if check and proc.returncode != 0:
            raise _failed(name, proc.returncode, out, err)
        return proc.returncode, out, err

    # -- state
    def status(self):
        """'running' (with pid), 'stopped', or 'missing' when there is no data directory.

        A postmaster that was killed and is not reaped yet (a zombie: pg_ctl still counts it as running until its
        parent reaps it) is stopped once no process is attached to its shared memory any more (no orphaned
        backend left that could take writes: PostgreSQL's own test before it starts).
        """
        if not os.path.isfile(os.path.join(self.data_dir, "PG_VERSION")):
            return {"state": "missing", "pid": None}
        if self.postmaster_gone() and self.attached() == 0:
            return self._stopped()
        rc, out, dummy = self.run("pg_ctl", ["status", "-D", self.data_dir], check=False)
        if rc == 0:
            match = re.search(r"PID: (\d+)", out)
            return {"state": "running", "pid": int(match.group(1)) if match else self.postmaster_pid()}
        return self._stopped()

    def _stopped(self):
        """'stopped', unless the postmaster.pid left behind names a port that still answers.

        Both tests above (kill(pid, 0) through pg_ctl, and the shared memory's attach count) only see this process's
        own pid and IPC namespaces. From inside a container that shares the data directory but not the host's pids
        (podman without --pid host), a running server looks stopped, and a rewind or a start would then run over
        its files: refused instead."""
        port, address = self.lock_file_endpoint()
        if port and _accepts_connections(address, port):
            raise ServerError("%s looks stopped from here (its postmaster.pid names pid %s, which this process cannot "
                              "see), yet %s:%s accepts connections: the server runs in another pid namespace (a "
                              "container without --pid host?); expected to run where its processes are visible, "
                              "refusing to treat it as stopped" % (self.data_dir, self.postmaster_pid(), address, port))
        return {"state": "stopped", "pid": None}

    def lock_file_endpoint(self):
        """(port, address) from postmaster.pid (its 4th and 6th lines), (None, None) when there is none."""
        lines = self.lock_file()
        port = lines[3].strip() if len(lines) > 3 else ""
        first = lines[5].strip().split(",")[0].strip() if len(lines) > 5 else ""
        if not port.isdigit():
            return None, None
        return int(port), "127.0.0.1" if first in ("", "*", "0.0.0.0") else ("::1" if first == "::" else first)

    def is_running(self):
        return self.status()["state"] == "running"

    def lock_file(self):
        """The lines of postmaster.pid ([] when there is none)."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as handle:
                return handle.read().splitlines()
        except (IOError, OSError):
            return []

    def postmaster_pid(self):
        lines = self.lock_file()
        try:
            return int(lines[0].strip()) if lines else None
        except ValueError:
            return None

    def postmaster_gone(self):
        """Whether postmaster.pid names a process that is gone or a zombie; False when there is no postmaster.pid
        or the process lives; None when this system cannot tell."""
        pid = self.postmaster_pid()
        if pid is None:
            return False
        state = process_state(pid)
        return None if state is None else state in ("", "Z")

    def attached(self):
        """How many processes (the postmaster, its backends and helpers, orphaned ones included) are attached to the
        shared memory segment postmaster.pid names; None when unknown."""
        lines = self.lock_file()
        fields = lines[6].split() if len(lines) > 6 else []
        if len(fields) != 2 or not fields[1].isdigit():
            return None
        return shm_attached(int(fields[1]))

    def wait_orphans_gone(self, timeout):
        """After a postmaster died: wait (deadline, polls of STOP_POLL_SECONDS) until none of its children is still
        attached to its shared memory (they exit when they notice the postmaster died). Returns whether the
        postmaster is gone; ServerError when orphans are still attached at the deadline."""
        if not self.postmaster_gone():
            return False
        try:
            wait_for(lambda: self.attached() in (0, None), timeout, interval=STOP_POLL_SECONDS,
                     what="orphaned backends to exit")
        except WaitTimeout:
            raise ServerError("the postmaster of %s is gone but %s processes are still attached to its shared memory "
                              "after %ss (wait_timeout): orphaned backends that may still take writes; expected none, "
                              "kill them (they run as the data directory's owner)"
                              % (self.data_dir, self.attached(), timeout)) from None
        return True

    def controldata(self):
        """pg_controldata as a dict of its labels ('Database cluster state', ...)."""
        out = self.run("pg_controldata", ["-D", self.data_dir])[1]
        values = {}
        for line in out.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                values[key.strip()] = value.strip()
        return values

    def is_standby_configured(self):
        return os.path.exists(os.path.join(self.data_dir, "standby.signal"))

    # -- start / stop
    def start(self, timeout=60):
        if self.is_running():
            return False
        self.wait_killed_postmaster_reaped(timeout)
        launched = time.time()
        waiter = self.spawn("pg_ctl", ["start", "-D", self.data_dir, "-l", self.log_file, "-w",
                                       "-t", str(int(timeout))])
        try:
            wait_for(lambda: waiter.poll() is not None or self.started_since(launched), timeout + 15,
                     interval=STOP_POLL_SECONDS, what="the server to start")
        except WaitTimeout:
            raise ServerError("pg_ctl start of %s did not finish within %ss" % (self.data_dir, timeout + 15)) from None
        finally:
            if waiter.poll() is None:
                waiter.kill()  # started: pg_ctl's own wait (its next 100 ms poll) is not needed; the postmaster
                # leads a session of its own, not pg_ctl's
            out, err = waiter.communicate()
        if waiter.returncode not in (0, -signal.SIGKILL):
            raise _failed("pg_ctl", waiter.returncode, out, err)
        return True

    def started_since(self, launched):
        """Whether postmaster.pid says a postmaster started at or after `launched` (seconds since the epoch, less
        pg_ctl's own 2 s of slack) lives and is ready for connections ("ready", or "standby" for a hot standby): the
        test pg_ctl start -w makes, polled here every STOP_POLL_SECONDS instead of its every 100 ms."""
        lines = self.lock_file()
        if len(lines) < 8 or lines[7].strip() not in ("ready", "standby"):
            return False
        try:
            started = int(lines[2].strip())
        except ValueError:
            return False
        return started >= int(launched) - 2 and self.postmaster_gone() is False

    def stop(self, mode="fast", timeout=60):
        """Stop the server (pg_ctl stop without -w: pg_ctl's own wait polls every 100 ms) and wait until it is
        down, polling every STOP_POLL_SECONDS: its postmaster.pid removed (the end of a shutdown), or its postmaster
        gone with nothing attached to its shared memory (it died meanwhile). ServerError at the deadline."""
        if not self.is_running():
            return False
        try:
            self.run("pg_ctl", ["stop", "-D", self.data_dir, "-m", mode, "-W"], timeout=timeout + 15)
        except ServerError:
            # A postmaster that was dying already (killed, its process not yet reaped when pg_ctl status looked)
            # makes pg_ctl fail to signal it: stopped is what was asked for. The caller reads pg_controldata to tell
            # a clean shutdown from this one.
            if self.is_running():
                raise
            return True
        try:
            wait_for(self._down, timeout, interval=STOP_POLL_SECONDS, what="the server to stop")
        except WaitTimeout:
            raise ServerError("%s did not stop within %ss (wait_timeout) after pg_ctl stop -m %s"
                              % (self.data_dir, timeout, mode)) from None
        return True

    def _down(self):
        if not os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
            return True
        return bool(self.postmaster_gone()) and self.attached() in (0, None)

    # -- configuration files
    def config_path(self, name):
        return os.path.join(self.data_dir, name)

    def read_file(self, name):
        try:
            with open(self.config_path(name)) as handle:
                return handle.read()
        except (IOError, OSError):
            return None

    def write_file(self, name, content):
        """Write a file in the data directory atomically, owned like the data directory."""
        write_owned(self.config_path(name), content, self.data_dir)

    def set_auto_conf(self, settings):
        """Set parameters in postgresql.auto.conf while the server is stopped (ALTER SYSTEM's file);
        a value of None removes the setting (ALTER SYSTEM RESET)."""
        lines = (self.read_file("postgresql.auto.conf") or "").splitlines()
        names = set(n.lower() for n in settings)
        kept = [line for line in lines if _setting_name(line) not in names]
        for name in sorted(settings):
            if settings[name] is not None:
                kept.append("%s = %s" % (name, quote_setting(settings[name])))
        self.write_file("postgresql.auto.conf", "\n".join(kept) + "\n")

    def auto_conf_setting(self, name):
        return conf_value([self.read_file("postgresql.auto.conf")], name)

    def conf_setting(self, name):
        """A setting's value as the config files say (postgresql.conf, then postgresql.auto.conf: the last wins)."""
        return conf_value([self.read_file("postgresql.conf"), self.read_file("postgresql.auto.conf")], name)

    def write_standby_signal(self):
        if not self.is_standby_configured():
            self.write_file("standby.signal", "")

    def pg_rewind(self, source_conninfo, password=None, timeout=600):
        """Rewind this (stopped) data directory to the source server's timeline.

        The password reaches pg_rewind through a temporary passfile (0600, owned by the data directory's
        owner, removed afterwards) named by PGPASSFILE: never PGPASSWORD in its environment.
        """
        self.wait_killed_postmaster_reaped(timeout)
        return self.run_with_password(
            "pg_rewind", ["--target-pgdata", self.data_dir, "--source-server", source_conninfo, "--progress"],
            password, timeout)

    def wait_killed_postmaster_reaped(self, timeout):
        """A postmaster killed with kill -9 stays a zombie until its parent reaps it (init: here up to seconds later),
        and PostgreSQL's own stale-lock test (kill(pid, 0)) still finds it: pg_rewind's single-user run and a start
        fail meanwhile with 'lock file "postmaster.pid" already exists'. Waits (deadline, polls of
        STOP_POLL_SECONDS) until that PID is no zombie any more; returns at once when there is none."""
        pid = self.postmaster_pid()
        if pid is None or process_state(pid) != "Z":
            return
        try:
            wait_for(lambda: process_state(pid) != "Z", timeout, interval=STOP_POLL_SECONDS,
                     what="the killed postmaster to be reaped")
        except WaitTimeout:
            raise ServerError("the killed postmaster of %s (PID %s) is still a zombie after %ss: PostgreSQL refuses to "
                              "start over it until its parent process reaps it (init or the service manager should); "
                              "expected it gone" % (self.data_dir, pid, timeout)) from None

    def run_with_password(self, name, args, password, timeout):
        """Run a client binary whose password reaches it through a temporary passfile (temp_passfile) named by
        PGPASSFILE, removed afterwards; its stdout and stderr together."""
        env = {}
        passfile = self.temp_passfile(password) if password else None
        if passfile:
            env["PGPASSFILE"] = passfile
        try:
            dummy, out, err = self.run(name, args, env=env, timeout=timeout)
        finally:
            if passfile and os.path.exists(passfile):
                os.unlink(passfile)
        return (out + err).strip()

    def move_aside(self, suffix):
        """Rename the (stopped) data directory to <data_dir>.<suffix> and leave an empty one, owned and moded like
        it, in its place (for pg_basebackup). Returns the path it was moved to. Refuses a data directory that is a
        mount point (it cannot be renamed) or a target that exists."""
        aside = "%s.%s" % (self.data_dir.rstrip("/"), suffix)
        problem = self.cannot_move_aside(aside)
        if problem:
            raise ServerError(problem)
        uid, gid = data_dir_owner(self.data_dir)
        mode = os.stat(self.data_dir).st_mode & 0o777
        try:
            os.rename(self.data_dir, aside)
        except OSError as exc:
            raise ServerError("cannot move %s aside to %s: %s" % (self.data_dir, aside, exc.strerror)) from None
        os.mkdir(self.data_dir, mode)
        if os.geteuid() == 0:
            os.chown(self.data_dir, uid, gid)
        return aside

    def cannot_move_aside(self, aside=None):
        """Why the data directory cannot be renamed (to aside), or None: a check to make before stopping anything."""
        if os.path.ismount(self.data_dir):
            return ("%s is a mount point: it cannot be moved aside for a re-clone; empty it by hand or re-clone into "
                    "another directory" % self.data_dir)
        if aside and os.path.lexists(aside):
            return "cannot move %s aside: %s exists already" % (self.data_dir, aside)
        parent = os.path.dirname(self.data_dir.rstrip("/"))
        if os.geteuid() != 0 and not os.access(parent, os.W_OK | os.X_OK):
            return "cannot move %s aside: its parent folder %s is not writable" % (self.data_dir, parent)
        return None

    def put_back(self, aside):
        """Undo move_aside(): remove what is in the data directory now and move the saved one back."""
        if os.path.isdir(self.data_dir):
            shutil.rmtree(self.data_dir)
        os.rename(aside, self.data_dir)

    def pg_basebackup(self, source_conninfo, password=None, timeout=600):
        """Clone the source server into this (empty) data directory, its WAL streamed along (-X stream), after a
        fast checkpoint. The password reaches pg_basebackup through a temporary passfile, as for pg_rewind."""
        return self.run_with_password(
            "pg_basebackup", ["--pgdata", self.data_dir, "--dbname", source_conninfo, "--wal-method=stream",
                              "--checkpoint=fast", "--no-password"], password, timeout)

    def temp_passfile(self, password):
        """A passfile matching any server for one command: 0600, owned by the data directory's owner."""
        uid, gid = data_dir_owner(self.data_dir)
        fd, path = tempfile.mkstemp(prefix=".erlmcp-dr-", suffix=".pgpass")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write("*:*:*:*:%s\n" % str(password).replace("\\", "\\\\").replace(":", "\\:"))
            os.chmod(path, 0o600)
            if os.geteuid() == 0:
                os.chown(path, uid, gid)
        except BaseException:
            os.unlink(path)
            raise
        return path


_SETTING_LINE_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?\s*(.*)$")


def conf_value(texts, name):
    """The value a setting takes in config file texts read in order (the last one wins).

    Follows no include directives: enough for primary_conninfo / cluster_name / primary_slot_name.
    """
    value = None
    for text in texts:
        for line in (text or "").splitlines():
            match = _SETTING_LINE_RE.match(line)
            if not match or match.group(1).lower() != name.lower():
                continue
            raw = match.group(2)
            raw = _strip_comment(raw)
            value = unquote_setting(raw)
    return value


def _strip_comment(raw):
    """Drop a trailing # comment that is not inside a quoted value."""
    quoted = False
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "'":
            if quoted and i + 1 < len(raw) and raw[i + 1] == "'":
                i += 2
                continue
            quoted = not quoted
        elif ch == "\\" and quoted:
            i += 2
            continue
        elif ch == "#" and not quoted:
            return raw[:i].strip()
        i += 1
    return raw.strip()


def _setting_name(line):
    match = _SETTING_LINE_RE.match(line)
    return match.group(1).lower() if match else None


def quote_setting(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    return "'%s'" % str(value).replace("\\", "\\\\").replace("'", "''")


def unquote_setting(raw):
    raw = raw.strip()
    if raw.startswith("'") and raw.endswith("'"):
        return raw[1:-1].replace("''", "'").replace("\\\\", "\\")
    return raw


def conninfo(**fields):
    """libpq key=value string with values quoted as libpq expects; None values are left out."""
    parts = []
    for key in sorted(fields):
        value = fields[key]
        if value is None:
            continue
        text = str(value).replace("\\", "\\\\").replace("'", "\\'")
        parts.append("%s='%s'" % (key, text))
    return " ".join(parts)


_CONNINFO_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:\\.|[^'\\])*'|[^\s']*)")


def parse_conninfo(text):
    """A libpq connection string (key=value form or a postgresql:// URI) -> dict of its fields.

    The caller decides what to keep: never return the password to a result.
    """
    text = (text or "").strip()
    if text.startswith(("postgresql://", "postgres://")):
        return _parse_uri(text)
    fields = {}
    for match in _CONNINFO_RE.finditer(text):
        raw = match.group(2)
        if raw.startswith("'"):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        fields[match.group(1)] = raw
    return fields


def _parse_uri(text):
    try:
        from urllib.parse import parse_qsl, unquote, urlsplit
    except ImportError:  # Python 2 is not supported by the collection
        raise
    parts = urlsplit(text)
    fields = dict(parse_qsl(parts.query))
    if parts.hostname:
        fields["host"] = unquote(parts.hostname)
    if parts.port:
        fields["port"] = str(parts.port)
    if parts.username:
        fields["user"] = unquote(parts.username)
    if parts.password:
        fields["password"] = unquote(parts.password)
    return fields


def conninfo_endpoint(text):
    """(host, port) a primary_conninfo points at; port defaults to 5432, host is None for a socket or when unset.

    Only the first host of a multi-host string counts.
    """
    fields = parse_conninfo(text)
    host = (fields.get("host") or fields.get("hostaddr") or "").split(",")[0] or None
    if host and host.startswith("/"):
        host = None
    port_text = (fields.get("port") or "").split(",")[0]
    port = int(port_text) if port_text.isdigit() else 5432
    return host, (port if host else None)
