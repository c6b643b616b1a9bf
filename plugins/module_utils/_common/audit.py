# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit trail's writer: one hash-chained JSONL file, appended by every entry point.

The runbook CLI and the Python API (src/erlmcp_dr/audit.py, which reads, verifies and filters the trail) and the
erlmcp.dr.audit_trail callback (plain ansible-playbook, AWX) append through this one function, so the records of
all of them chain in one file. No Ansible imports, Python 3.8+ (it runs in ansible-playbook's process too).

Where the trail lives: $ERLMCP_DR_HOME/audit/audit.jsonl, else the checkout's .runs/audit/audit.jsonl when the
collection is a source checkout, else $XDG_STATE_HOME (or ~/.local/state)/erlmcp-dr/audit/audit.jsonl: the place
the runbook CLI uses (erlmcp_dr.paths.state_home), found here without the controller package (an installed
collection never reads src/).

An append takes an exclusive flock on the file, reads the last record, writes one line with O_APPEND and fsyncs
it; with a key (ERLMCP_DR_AUDIT_KEY_FILE or ERLMCP_DR_AUDIT_KEY) the record carries `mac`, HMAC-SHA256 over its
content; before the flock is let go, the new head (seq, hash) is written to an anchor file beside the run locks
(<lock folder>/audit-head-<digest of the trail's path>.json), out of the state folder that holds the trail.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import hmac
import json
import os
import socket
from contextlib import contextmanager

from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import fsync_folder, write_atomic
from ansible_collections.erlmcp.dr.plugins.module_utils._lock.store import default_store_dir, try_flock
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

AUDIT_DIR = "audit"
AUDIT_FILE = "audit.jsonl"
HOME_ENV = "ERLMCP_DR_HOME"
GENESIS = "0" * 64  # the `prev` of the first record
LOCK_TIMEOUT = 30.0  # seconds an append waits for another process's append (each holds it for milliseconds)
KEY_FILE_ENV = "ERLMCP_DR_AUDIT_KEY_FILE"  # a file holding the HMAC key (0600 or stricter)
KEY_ENV = "ERLMCP_DR_AUDIT_KEY"  # the key itself, when no file is given
MIN_KEY_BYTES = 16
ANCHOR_PREFIX = "audit-head-"
# Set by the runbook CLI / API for the ansible-playbook it starts: they write that run's records themselves,
# the callback stays quiet (one record per event, not two).
WRITER_ENV = "ERLMCP_DR_AUDIT_WRITER"
ENTRY_POINTS = ("cli", "api", "ansible-playbook", "awx")
_TAIL_CHUNK = 8192


class AuditKeyError(ValueError):
    """The audit key's file is unreadable, readable by others, or the key is too short."""


# ---------------------------------------------------------------- where


def default_state_home(environ=None):
    """$ERLMCP_DR_HOME, else the source checkout's .runs (this file's collection root holds galaxy.yml and
    src/erlmcp_dr), else the user's state folder: the same choice as erlmcp_dr.paths.state_home."""
    environ = os.environ if environ is None else environ
    if environ.get(HOME_ENV):
        return os.path.realpath(os.path.expanduser(environ[HOME_ENV]))
    root = os.path.realpath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".."))
    if os.path.isfile(os.path.join(root, "galaxy.yml")) and \
            os.path.isfile(os.path.join(root, "src", "erlmcp_dr", "paths.py")):
        return os.path.join(root, ".runs")
    xdg = environ.get("XDG_STATE_HOME", "")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "erlmcp-dr")


def default_audit_path(environ=None):
    return os.path.join(default_state_home(environ), AUDIT_DIR, AUDIT_FILE)


def head_anchor_path(path, environ=None):
    """<lock folder>/audit-head-<sha256 of the trail's real path, 16 hex>.json."""
    digest = hashlib.sha256(os.path.realpath(str(path)).encode("utf-8")).hexdigest()[:16]
    return os.path.join(default_store_dir(environ), "%s%s.json" % (ANCHOR_PREFIX, digest))


# ---------------------------------------------------------------- who and when


def os_user():
    """The effective user's name (its passwd entry: not $USER, which anyone can set), else its uid."""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # no passwd entry (a container's arbitrary uid): the uid still says who
        return str(os.geteuid())


def who(operator=None):
    return {"user": os_user(), "operator": operator or None, "host": socket.gethostname()}


def now_iso():
    moment = datetime.datetime.now(datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- hashing and the key


def canonical(record):
    """The one serialization hashed and written: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(record):
    body = dict((key, value) for key, value in record.items() if key != "hash")
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def record_mac(record, key):
    """HMAC-SHA256 of the record without its `hash` and `mac` (the hash then covers the mac)."""
    body = dict((name, value) for name, value in record.items() if name not in ("hash", "mac"))
    return hmac.new(key, canonical(body).encode("utf-8"), hashlib.sha256).hexdigest()


def audit_key(environ=None):
    """The HMAC key: the content of $ERLMCP_DR_AUDIT_KEY_FILE (stripped), else $ERLMCP_DR_AUDIT_KEY, else None.
    A key file readable by group or others is refused: anyone who reads it can forge the trail."""
    environ = os.environ if environ is None else environ
    key_file = environ.get(KEY_FILE_ENV, "")
    if key_file:
        path = os.path.expanduser(key_file)
        try:
            mode = os.stat(path).st_mode & 0o777
            with open(path, "rb") as handle:
                key = handle.read().strip()
        except (IOError, OSError) as exc:
            raise AuditKeyError("cannot read the audit key file %s (%s): %s" % (path, KEY_FILE_ENV,
                                                                                exc.strerror)) from exc
        if mode & 0o077:
            raise AuditKeyError("the audit key file %s (%s) has mode %04o: expected 0600 or stricter (chmod 600 %s); "
                                "anyone who reads it can forge the trail" % (path, KEY_FILE_ENV, mode, path))
    else:
        key = environ.get(KEY_ENV, "").strip().encode("utf-8")
        if not key:
            return None
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyError("the audit key (%s) is %d bytes: expected at least %d (e.g. `openssl rand -hex 32`)" % (
            KEY_FILE_ENV if key_file else KEY_ENV, len(key), MIN_KEY_BYTES))
    return key


# ---------------------------------------------------------------- appending


def append(fields, path=None):
    """Appends one record (`fields` plus seq, prev, mac with a key, hash) and returns it, durable (fsync'd) on
    return; the new head is written to the anchor beside the run locks before the flock is let go."""
    path = str(path or default_audit_path())
    key = audit_key()
    ensure_folder(os.path.dirname(path))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        with _locked(fd, path):
            last = last_record(path)
            record = dict(fields)
            record.pop("mac", None)
            record["seq"] = int(last.get("seq") or 0) + 1 if last else 1
            record["prev"] = str(last.get("hash") or GENESIS) if last else GENESIS
            if key is not None:
                record["mac"] = record_mac(record, key)
            record["hash"] = record_hash(record)
            os.write(fd, (canonical(record) + "\n").encode("utf-8"))
            os.fsync(fd)
            save_head_anchor(path, record)
    finally:
        os.close(fd)
    return record


@contextmanager
def _locked(fd, path):
    try:
        wait_for(lambda: try_flock(fd), LOCK_TIMEOUT, interval=0.005, what="the audit trail's lock (%s)" % path)
    except WaitTimeout as exc:
        raise OSError("%s: another process holds it; expected it free within %.0f s" % (exc, LOCK_TIMEOUT)) from exc
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def ensure_folder(folder):
    """A 0700 folder (and its parents), its entry made durable."""
    if os.path.isdir(folder):
        return
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    fsync_folder(os.path.dirname(folder.rstrip("/")) or "/")


def anchor_of(record, path=None):
    """What an anchor keeps of the head: the trail's path, seq, hash (and mac), the run and the time."""
    if not record or not isinstance(record.get("seq"), int):
        return None
    anchor = {"path": str(path or default_audit_path()), "seq": record["seq"], "hash": record.get("hash"),
              "run_id": record.get("run_id"), "time": record.get("time")}
    if record.get("mac"):
        anchor["mac"] = record["mac"]
    return anchor


def save_head_anchor(path, record):
    """Writes the head anchor (atomically, 0600). Raises OSError; append() has already made the record durable,
    so a caller that logs instead of failing loses the anchor, not the record."""
    target = head_anchor_path(path)
    ensure_folder(os.path.dirname(target))
    write_atomic(target, json.dumps(anchor_of(record, path), sort_keys=True) + "\n", 0o600)


# ---------------------------------------------------------------- the last record


def last_record(path):
    """The file's last record ({} for an empty or missing file), read from its end. When the last line is not
    a record (torn by a crash, or edited), the last line that is: the chain goes on from it."""
    line = _last_line(path)
    if not line:
        return {}
    record = parse(line)
    if record is not None:
        return record
    try:
        with open(path, "rb") as handle:
            lines = handle.read().split(b"\n")
    except (IOError, OSError):
        return {}
    for earlier in reversed(lines):
        record = parse(earlier) if earlier else None
        if record is not None:
            return record
    return {}


def parse(raw):
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _last_line(path):
    try:
        handle = open(path, "rb")
    except (IOError, OSError):
        return b""
    with handle:
        position = handle.seek(0, os.SEEK_END)
        data = b""
        while position > 0:
            step = min(_TAIL_CHUNK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
            stripped = data.rstrip(b"\n")
            if b"\n" in stripped:
                return stripped.rsplit(b"\n", 1)[1]
        return data.rstrip(b"\n")


# ---------------------------------------------------------------- the records a run appends


def run_start(run_id, runbook, parameters, check, operator, inventory, limit=None, entry_point=None):
    return {"kind": "run_start", "time": now_iso(), "run_id": run_id, "runbook": runbook, "who": who(operator),
            "check": check, "parameters": dict(parameters), "inventory": inventory, "limit": limit,
            "entry_point": entry_point}


def step_record(run_id, runbook, step, operator, targets=(), before=None, after=None, entry_point=None):
    """`target`: the host the task ran on; `targets`: that host and the inventory hosts the step acted on."""
    host = step.get("host") or ""
    record = {"kind": "step", "time": now_iso(), "run_id": run_id, "runbook": runbook, "who": who(operator),
              "check": False, "target": host, "step": step.get("task") or "",
              "action": step.get("action") or "", "targets": sorted((set(targets) | {host}) - {""}),
              "result": step.get("status") or "changed", "started": step.get("start"), "ended": step.get("end"),
              "facts": step.get("data") or {}, "entry_point": entry_point}
    if before is not None or after is not None:
        record["before"], record["after"] = before, after
    return record


def run_end(run_id, runbook, operator, status, rc, check, duration_seconds, failing_step, targets,
            entry_point=None):
    return {"kind": "run_end", "time": now_iso(), "run_id": run_id, "runbook": runbook, "who": who(operator),
            "check": check, "result": status, "rc": rc, "duration_seconds": duration_seconds,
            "failing_step": failing_step, "targets": sorted(set(targets)), "entry_point": entry_point}
