# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run lock's store: one holder record per key, taken atomically, with liveness checks.

Used by the erlmcp.dr.run_lock action plugin (controller side). No Ansible imports, Python 3.8+.

A holder record is a JSON object (file mode 0600 in a 0700 folder):
  key, run_id, runbook, operator, pid (the ansible-playbook process), pid_start_ticks and boot_id (to tell a
  reused PID from the holder), process_started_at, hostname, user, started_at, expires_at, format.

A holder is alive when
  - it was taken on this host: its PID runs, with the same start time, since the same boot;
  - it was taken on another host (its PID cannot be checked from here): its lease has not expired.

Every store implements LockStore (acquire, release, inspect); DirectoryStore is the default: a folder on the
controller, serialized with flock on a mutex file, records written by temp file + rename.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import getpass
import hashlib
import json
import os
import socket
import tempfile
from contextlib import contextmanager

from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

FORMAT = 1
MIN_LEASE_SECONDS = 60
DEFAULT_LEASE_SECONDS = 3600
MUTEX_NAME = ".mutex"
RECORD_SUFFIX = ".lock.json"

# Decisions when taking the lock
TAKE = "take"  # free: take it
HELD = "held"  # already held by this run id
BUSY = "busy"  # held by another live run
TAKE_OVER = "take_over"  # held by a run that is gone: take it over

# Outcomes when releasing it
RELEASED = "released"
NOT_HELD = "not_held"
HELD_BY_OTHER = "held_by_other"


class LockStoreError(Exception):
    """The store cannot be used (folder not creatable, mutex not obtained in time, unwritable record)."""


# ---------------------------------------------------------------- time and process identity


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).replace(microsecond=0).isoformat()


def parse_iso(text):
    """A timestamp written by iso(); None when missing or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def _read_text(path):
    try:
        with open(path, "r") as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def boot_id():
    """This boot's id (Linux), or '' where there is none."""
    return (_read_text("/proc/sys/kernel/random/boot_id") or "").strip()


def _boot_time():
    for line in (_read_text("/proc/stat") or "").splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    return None


def process_identity(pid):
    """{pid, pid_start_ticks, boot_id, process_started_at} of a running process, or None if it does not run.

    The start time (field 22 of /proc/<pid>/stat, clock ticks since boot) tells a process from a later one that
    got the same PID. A zombie counts as gone.
    """
    stat = _read_text("/proc/%d/stat" % int(pid))
    if stat is None:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    ticks = int(fields[19])
    started = None
    btime = _boot_time()
    if btime is not None:
        seconds = btime + ticks / float(os.sysconf("SC_CLK_TCK"))
        started = iso(datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc))
    return {"pid": int(pid), "pid_start_ticks": ticks, "boot_id": boot_id(), "process_started_at": started}


def current_user():
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):
        return "uid %d" % os.getuid()


def playbook_run_id(pid):
    """The run id of an ansible-playbook process started without one (plain ansible-playbook, AWX): its PID and
    start time (a reused PID gets another) and the host. The run lock and the audit trail both name a run so."""
    identity = process_identity(pid) or {"pid_start_ticks": 0}
    return "ansible-playbook-%d-%s@%s" % (pid, identity["pid_start_ticks"], socket.gethostname())


def key_digest(key):
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- holder records and decisions


def holder_record(key, run_id, pid, lease_seconds, runbook="", operator="", now=None, hostname=None, user=None):
    """The record a run writes when it takes the lock for key, as ansible-playbook process pid."""
    now = now or utc_now()
    identity = process_identity(pid) or {"pid": int(pid), "pid_start_ticks": None, "boot_id": boot_id(),
                                         "process_started_at": None}
    record = {
        "format": FORMAT,
        "key": key,
        "run_id": run_id,
        "runbook": runbook or "",
        "operator": operator or "",
        "hostname": hostname or socket.gethostname(),
        "user": user or current_user(),
        "started_at": iso(now),
        "expires_at": iso(now + datetime.timedelta(seconds=int(lease_seconds))),
        "lease_seconds": int(lease_seconds),
    }
    record.update(identity)
    return record


def holder_liveness(holder, hostname=None, now=None):
    """(alive, reason): whether the run that wrote holder still runs, and why we think so."""
    hostname = hostname or socket.gethostname()
    now = now or utc_now()
    pid = holder.get("pid")
    if holder.get("hostname") == hostname and isinstance(pid, int):
        identity = process_identity(pid)
        if identity is None:
            return False, "PID %d is not running on %s" % (pid, hostname)
        if holder.get("boot_id") and identity["boot_id"] and holder["boot_id"] != identity["boot_id"]:
            return False, "%s has rebooted since the lock was taken" % hostname
        if holder.get("pid_start_ticks") != identity["pid_start_ticks"]:
            return False, ("PID %d now belongs to another process (started at %s; the holder's started at %s)"
                           % (pid, identity["process_started_at"], holder.get("process_started_at")))
        return True, "PID %d still runs on %s" % (pid, hostname)
    expires = parse_iso(holder.get("expires_at"))
    if expires is None:
        return False, "the record has no readable expires_at"
    if now >= expires:
        return False, "its lease expired at %s (held from host %s, where its PID cannot be checked from %s)" % (
            holder.get("expires_at"), holder.get("hostname"), hostname)
    return True, "its lease runs until %s (held from host %s, where its PID cannot be checked from %s)" % (
        holder.get("expires_at"), holder.get("hostname"), hostname)


def decide(existing, run_id, hostname=None, now=None, liveness=holder_liveness):
    """(decision, reason) for a run that wants the lock, given the record found (None when free)."""
    if existing is None:
        return TAKE, "the lock is free"
    if existing.get("unreadable"):
        return TAKE_OVER, "the lock record could not be read (%s)" % existing["unreadable"]
    if existing.get("run_id") == run_id:
        return HELD, "run %s already holds the lock" % run_id
    alive, reason = liveness(existing, hostname, now)
    return (BUSY if alive else TAKE_OVER), reason


def describe_holder(holder):
    """One line naming a holder: run id, runbook, operator, PID, host, user, times."""
    if holder.get("unreadable"):
        return "an unreadable lock record (%s)" % holder["unreadable"]
    who = "run %s" % holder.get("run_id")
    extras = []
    if holder.get("runbook"):
        extras.append("runbook %s" % holder["runbook"])
    if holder.get("operator"):
        extras.append("operator %s" % holder["operator"])
    if extras:
        who += " (%s)" % ", ".join(extras)
    return ("%s: ansible-playbook PID %s on host %s as user %s, process started at %s, lock taken at %s, "
            "lease until %s") % (
        who, holder.get("pid"), holder.get("hostname"), holder.get("user"), holder.get("process_started_at"),
        holder.get("started_at"), holder.get("expires_at"))


# ---------------------------------------------------------------- stores


class LockStore(object):
    """What a run lock store offers. Every method is atomic with respect to the others, across processes
    (and, for a shared store, across hosts).

    acquire(record, hostname=None, now=None) -> dict(decision, reason, holder (the record found or None),
        record (the record now stored, for TAKE/HELD/TAKE_OVER), path)
    release(key, run_id) -> dict(outcome, holder (the record found or None), path)
    inspect(key, run_id, hostname=None, now=None) -> dict(decision, reason, holder, path): reads only.
    kind: the store's name (STORE_KINDS); store_dir: its folder, None for a store that has none.
    """

    kind = None
    store_dir = None

    def acquire(self, record, hostname=None, now=None):
        raise NotImplementedError

    def release(self, key, run_id):
        raise NotImplementedError

    def inspect(self, key, run_id, hostname=None, now=None):
        raise NotImplementedError


class DirectoryStore(LockStore):
    """Holder records as files in one folder of the controller: <sha256(key)>.lock.json."""

    kind = "directory"

    def __init__(self, store_dir, mutex_timeout=10.0):
        self.store_dir = os.path.abspath(os.path.expanduser(store_dir))
        self.mutex_timeout = mutex_timeout

    def path_for(self, key):
        return os.path.join(self.store_dir, key_digest(key) + RECORD_SUFFIX)

    def acquire(self, record, hostname=None, now=None):
        path = self.path_for(record["key"])
        with self._mutex():
            existing = self._read(path)
            decision, reason = decide(existing, record["run_id"], hostname, now)
            stored = None
            if decision in (TAKE, TAKE_OVER):
                stored = record
            elif decision == HELD:
                # Same run again (a re-run of the task, or the same run id from a new process): keep when it
                # was taken, follow the process that now runs it and renew the lease.
                stored = dict(record, started_at=existing.get("started_at", record["started_at"]))
            if stored is not None:
                self._write(path, stored)
        return {"decision": decision, "reason": reason, "holder": existing, "record": stored, "path": path}

    def release(self, key, run_id):
        path = self.path_for(key)
        with self._mutex():
            existing = self._read(path)
            if existing is None:
                return {"outcome": NOT_HELD, "holder": None, "path": path}
            if existing.get("run_id") != run_id:
                return {"outcome": HELD_BY_OTHER, "holder": existing, "path": path}
            os.unlink(path)
            self._sync_dir()
        return {"outcome": RELEASED, "holder": existing, "path": path}

    def inspect(self, key, run_id, hostname=None, now=None):
        path = self.path_for(key)
        if not os.path.isdir(self.store_dir):
            return {"decision": TAKE, "reason": "the lock is free", "holder": None, "path": path}
        with self._mutex():
            existing = self._read(path)
        decision, reason = decide(existing, run_id, hostname, now)
        return {"decision": decision, "reason": reason, "holder": existing, "path": path}

    # -------------------------------------------------------- internals

    def _ensure_dir(self):
        try:
            os.makedirs(self.store_dir, mode=0o700)
        except OSError as exc:
            if exc.errno != errno.EEXIST or not os.path.isdir(self.store_dir):
                raise LockStoreError("cannot create the lock folder %s: %s (set store_dir or ERLMCP_DR_LOCK_DIR to "
                                     "a writable folder)" % (self.store_dir, exc)) from exc
        info = os.stat(self.store_dir)
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.chmod(self.store_dir, 0o700)

    @contextmanager
    def _mutex(self):
        self._ensure_dir()
        fd = os.open(os.path.join(self.store_dir, MUTEX_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                wait_for(lambda: try_flock(fd), self.mutex_timeout, interval=0.01,
                         what="the lock folder's mutex %s" % os.path.join(self.store_dir, MUTEX_NAME))
            except WaitTimeout as exc:
                raise LockStoreError("%s: another process keeps it locked" % exc) from exc
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _read(self, path):
        try:
            with open(path, "r") as handle:
                text = handle.read()
        except (IOError, OSError) as exc:
            if exc.errno == errno.ENOENT:
                return None
            return {"unreadable": "%s: %s" % (path, exc)}
        try:
            data = json.loads(text)
        except ValueError as exc:
            return {"unreadable": "%s is not JSON: %s" % (path, exc)}
        if not isinstance(data, dict):
            return {"unreadable": "%s holds a %s, not an object" % (path, type(data).__name__)}
        return data

    def _write(self, path, record):
        fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix=RECORD_SUFFIX, dir=self.store_dir)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(record, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o600)
            os.rename(temp, path)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        self._sync_dir()

    def _sync_dir(self):
        fd = os.open(self.store_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def try_flock(fd):
    """A non-blocking exclusive flock on fd: True when taken, False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (IOError, OSError) as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def default_store_dir(environ=None):
    """ERLMCP_DR_LOCK_DIR, else $XDG_STATE_HOME/erlmcp-dr/locks, else ~/.local/state/erlmcp-dr/locks."""
    environ = os.environ if environ is None else environ
    if environ.get("ERLMCP_DR_LOCK_DIR"):
        return os.path.expanduser(environ["ERLMCP_DR_LOCK_DIR"])
    state_home = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state_home, "erlmcp-dr", "locks")


# ---------------------------------------------------------------- which store: the one factory

STORE_VAR = "dr_lock_store"  # the inventory's choice
STORE_ENV = "ERLMCP_DR_LOCK_STORE"  # the environment's, when the inventory says nothing
STORE_DIRECTORY = "directory"
STORE_ETCD = "etcd"
STORE_KINDS = (STORE_DIRECTORY, STORE_ETCD)
# The inventory variables the etcd store reads (rendered by the caller; the password comes from vault).
ETCD_VARS = ("dr_lock_etcd_endpoints", "dr_lock_etcd_ca_file", "dr_lock_etcd_cert_file", "dr_lock_etcd_key_file",
             "dr_lock_etcd_user", "dr_lock_etcd_password", "dr_lock_etcd_ttl", "dr_lock_etcd_prefix",
             "dr_lock_etcd_timeout")
STORE_VARS = (STORE_VAR,) + ETCD_VARS


def lock_variables(templar, task_vars):
    """The STORE_VARS the play defines, rendered with its variables (vault values decrypted): what store_settings
    reads. templar is the action's (Ansible's Templar); nothing is rendered when none is defined."""
    names = [name for name in STORE_VARS if task_vars.get(name) is not None]
    if not names:
        return {}
    render = templar.copy_with_new_env(available_variables=task_vars)
    return dict((name, render.template(task_vars[name])) for name in names)


def store_settings(variables, environ=None, store_dir=None):
    """The store a run uses, from the inventory's variables (`variables`: the STORE_VARS it defines, rendered),
    else the environment (ERLMCP_DR_LOCK_STORE, ERLMCP_DR_LOCK_ETCD_ENDPOINTS), else the directory store.

    Returns {"kind": "directory", "store_dir": ...} or the etcd store's settings (_lock_etcd.settings). Raises
    LockStoreError naming the variable on bad input. Never falls back from etcd to the directory: running without
    the shared store is the operator's explicit choice (dr_lock_store: directory).
    """
    environ = os.environ if environ is None else environ
    kind = variables.get(STORE_VAR)
    source = STORE_VAR
    if kind in (None, ""):
        kind, source = environ.get(STORE_ENV) or STORE_DIRECTORY, STORE_ENV
    kind = str(kind).strip().lower()
    if kind not in STORE_KINDS:
        raise LockStoreError("%s is %r: expected one of %s (%s, the default, keeps the lock in a folder of this "
                             "controller; %s shares it between controllers)" % (
                                 source, kind, ", ".join(STORE_KINDS), STORE_DIRECTORY, STORE_ETCD))
    if kind == STORE_DIRECTORY:
        return {"kind": STORE_DIRECTORY, "store_dir": store_dir or default_store_dir(environ)}
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd

    return _lock_etcd.settings(variables, environ)


def fencing_check(playbook_pid, variables_of):
    """(refusal, tokens): refusal is None, or why the step about to run must not: the run of ansible-playbook process
    playbook_pid took a lock in a shared store and no longer holds it (its fencing token is not the live holder's);
    tokens maps each shared-store key this process holds to its fencing token. variables_of() returns the
    inventory's STORE_VARS, rendered; it is called only when this process holds such a lock. The directory store has
    no fencing: a folder of one controller sees every holder's process."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd

    return _lock_etcd.fencing_check(playbook_pid, lambda: store_settings(variables_of()))


def fencing_refusal(playbook_pid, variables_of):
    """fencing_check's refusal only."""
    return fencing_check(playbook_pid, variables_of)[0]


def make_store(settings):
    """The LockStore the settings (store_settings) describe: the one place a run lock store is built."""
    if settings["kind"] == STORE_ETCD:
        from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd

        return _lock_etcd.EtcdStore(settings)
    return DirectoryStore(settings["store_dir"])
