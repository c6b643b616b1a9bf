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
import subprocess
import tempfile
import time

DEFAULT_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/pgsql-15/bin", "/usr/local/pgsql/bin")


class ServerError(Exception):
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


class Server(object):
    """One PostgreSQL data directory on this host and the binaries that manage it."""

    def __init__(self, data_dir, bin_dir=None, log_file=None):
        self.data_dir = os.path.abspath(data_dir)
        self.bin_dir = find_bin_dir(bin_dir)
        self.log_file = log_file or os.path.join(self.data_dir, "pg_ctl_start.log")

    # -- running commands as the owner
    def run(self, name, args, env=None, timeout=None, check=True):
        """Run one PostgreSQL binary as the data directory's owner; (rc, stdout, stderr)."""
        argv = [os.path.join(self.bin_dir, name)] + list(args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        preexec = None
        uid, gid = data_dir_owner(self.data_dir)
        if os.geteuid() == 0 and uid != 0:
            preexec = _demote_to(uid, gid)
            full_env["HOME"] = "/"
        try:
            proc = subprocess.run(
                argv, env=full_env, preexec_fn=preexec, cwd="/", timeout=timeout,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                universal_newlines=True, check=False,
            )
        except subprocess.TimeoutExpired:
            raise ServerError("%s did not finish within %ss" % (" ".join(argv[:2]), timeout)) from None
        if check and proc.returncode != 0:
            raise ServerError("%s failed (rc=%s): %s" % (name, proc.returncode, (proc.stderr or proc.stdout).strip()))
        return proc.returncode, proc.stdout, proc.stderr

    # -- state
    def status(self):
        """'running' (with pid), 'stopped', or 'missing' when there is no data directory."""
        if not os.path.isfile(os.path.join(self.data_dir, "PG_VERSION")):
            return {"state": "missing", "pid": None}
        rc, out, dummy = self.run("pg_ctl", ["status", "-D", self.data_dir], check=False)
        if rc == 0:
            match = re.search(r"PID: (\d+)", out)
            return {"state": "running", "pid": int(match.group(1)) if match else self.postmaster_pid()}
        return {"state": "stopped", "pid": None}

    def is_running(self):
        return self.status()["state"] == "running"

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as handle:
                return int(handle.readline().strip())
        except (OSError, ValueError):
            return None

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
        self.run("pg_ctl", ["start", "-D", self.data_dir, "-l", self.log_file, "-w", "-t", str(int(timeout))],
                 timeout=timeout + 15)
        return True

    def stop(self, mode="fast", timeout=60):
        if not self.is_running():
            return False
        self.run("pg_ctl", ["stop", "-D", self.data_dir, "-m", mode, "-w", "-t", str(int(timeout))],
                 timeout=timeout + 15)
        return True

    def wait_stopped(self, timeout):
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() > deadline:
                raise ServerError("PostgreSQL in %s still running after %ss" % (self.data_dir, timeout))
            time.sleep(0.1)

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
        path = self.config_path(name)
        uid, gid = data_dir_owner(self.data_dir)
        fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=".%s." % name)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
            os.chmod(tmp, 0o600)
            if os.geteuid() == 0:
                os.chown(tmp, uid, gid)
            os.rename(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def set_auto_conf(self, settings):
        """Set parameters in postgresql.auto.conf while the server is stopped (ALTER SYSTEM's file)."""
        lines = (self.read_file("postgresql.auto.conf") or "").splitlines()
        kept = [line for line in lines if _setting_name(line) not in settings]
        for name in sorted(settings):
            kept.append("%s = %s" % (name, quote_setting(settings[name])))
        self.write_file("postgresql.auto.conf", "\n".join(kept) + "\n")

    def auto_conf_setting(self, name):
        value = None
        for line in (self.read_file("postgresql.auto.conf") or "").splitlines():
            if _setting_name(line) == name:
                value = unquote_setting(line.split("=", 1)[1])
        return value

    def write_standby_signal(self):
        if not self.is_standby_configured():
            self.write_file("standby.signal", "")

    def pg_rewind(self, source_conninfo, password=None, timeout=600):
        """Rewind this (stopped) data directory to the source server's timeline."""
        env = {"PGPASSWORD": password} if password else {}
        dummy, out, err = self.run(
            "pg_rewind",
            ["--target-pgdata", self.data_dir, "--source-server", source_conninfo, "--progress"],
            env=env, timeout=timeout,
        )
        return (out + err).strip()


_SETTING_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=")


def _setting_name(line):
    match = _SETTING_RE.match(line)
    return match.group(1) if match else None


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
