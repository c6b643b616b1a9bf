# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of pg_restore: a point-in-time restore into a SCRATCH instance, started and proven (docs/pitr.md).

Order, and what is checked before anything is written:
  1. the target (latest | time | lsn | name) and the scratch directory: absolute, not a live data directory, not
     inside one nor holding one, empty or absent (or a scratch instance a killed run of ours left: cleaned);
  2. the backup: chosen from `pgbackrest info` by label, else by LSN / stop time (never a file's time);
  3. the WAL: every segment from the backup's start to the target (for a time, a name or latest: to the end of the
     archive on the target timeline) is in the archive's listing, following timeline history files; the first
     missing one is named and nothing is written.
Check mode stops there. Then: pgBackRest writes the backup into the scratch directory with recovery set to stop at
the target and pause (`recovery_target_action = pause`: the scratch never promotes, so it makes no timeline and
archives nothing: archive_mode is off there); the scratch gets its own port on 127.0.0.1 and is started; the engine
waits until replay paused at the target (latest: until recovery ended) and reports the last transaction replayed
and its commit time (pg_last_xact_replay_timestamp, pg_last_wal_replay_lsn). The live cluster is never touched.

A marker file beside the scratch directory (`<scratch_dir>.erlmcp-dr.json`) records what is being restored: a run
killed mid-restore leaves it `restoring`, and the next run stops what runs there and restores anew; a proven restore
of the same backup and target is found done (changed false).

Private to the collection. Python 3.8 syntax at most: module_utils run on managed hosts.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import shutil
import socket

from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import plan
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import write_atomic
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import Server, data_dir_owner
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.backup import describe_backup, driver_for
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

MARKER_SUFFIX = ".erlmcp-dr.json"
AFTER = ("running", "stopped", "removed")


def run(params, check_mode=False, diff=False, warn=None):
    target = parse_target(params.get("target_type") or "latest", params.get("target"))
    scratch = os.path.abspath(params["scratch_dir"])
    facts = dict(changed=False, target=target, scratch_dir=scratch, repository=None)
    _check_scratch_place(scratch, params.get("live_data_dirs") or [])
    previous = read_marker(scratch)
    driver = driver_for(params)
    facts["repository"] = driver.describe()
    stanzas = driver.info()
    backup = _choose(stanzas, target, params.get("backup_label"))
    facts["backup"] = describe_backup(backup)
    facts["wal"] = check_wal(driver, stanzas, backup, target)
    if previous and previous.get("state") == "proven" and previous.get("label") == backup["label"] \
            and previous.get("target") == target and os.path.isdir(scratch):
        facts.update(previous.get("facts") or {}, changed=False, found_done=True)
        return facts
    _check_scratch_empty(scratch, previous)
    port = params.get("scratch_port") or free_port()
    facts.update(scratch_port=port, cleaned_leftover=bool(previous))
    if check_mode:
        facts["changed"] = True
        return facts
    facts["changed"] = True
    if previous:
        clean(scratch, params)
    try:
        _restore(driver, params, backup, target, scratch, port)
        server = Server(scratch, bin_dir=params.get("pg_bin_dir"), log_file=log_file(scratch))
        facts["proof"] = _start_and_prove(server, params, target, port, facts)
    except ModuleFailure as exc:
        # Nothing half-restored stays behind to be mistaken for a proven copy; the live cluster was never touched.
        clean(scratch, params)
        facts.update(exc.facts)
        raise ModuleFailure("%s. The scratch instance %s was removed; the live cluster was not touched"
                            % (str(exc).rstrip("."), scratch), **facts) from None
    _write_marker(scratch, params, dict(state="proven", label=backup["label"], target=target, facts=dict(
        facts, changed=False)))
    if params["after"] != "running":
        server.stop(timeout=params["start_timeout"])
    if params["after"] == "removed":
        clean(scratch, params)
    facts["scratch_state"] = params["after"]
    return facts


# -- the target ------------------------------------------------------------------------------------------------


def parse_target(kind, value):
    """{type, value[, epoch]}: a time must carry its zone (an ISO 8601 time, 'Z' or an offset)."""
    if kind not in plan.TARGET_TYPES:
        raise ModuleFailure("target_type is %r: expected one of %s (target_type)"
                            % (kind, ", ".join(plan.TARGET_TYPES)))
    if kind == "latest":
        if value:
            raise ModuleFailure("target is %r with target_type latest: latest takes no target value (leave target "
                                "out, or set target_type to time, lsn or name)" % (value,))
        return {"type": "latest", "value": None}
    if not value:
        raise ModuleFailure("target_type %s needs a target (target): %s" % (kind, {
            "time": "a time with its zone, e.g. 2026-12-06T11:40:00.123456+00:00",
            "lsn": "an LSN, e.g. 0/3000028", "name": "a restore point's name (pg_create_restore_point)"}[kind]))
    if kind == "lsn":
        try:
            position = plan.parse_lsn(value)
        except plan.PlanError as exc:
            raise ModuleFailure("target %s (target)" % exc) from None
        return {"type": "lsn", "value": plan.format_lsn(position)}
    if kind == "time":
        moment = _parse_time(value)
        return {"type": "time", "value": moment.isoformat(sep=" "), "epoch": moment.timestamp()}
    return {"type": "name", "value": str(value)}


def _parse_time(value):
    text = str(value).strip().replace("Z", "+00:00")
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ModuleFailure("target %r is not a time with its zone: expected ISO 8601 with an offset or Z, e.g. "
                            "2026-12-06T11:40:00.123456+00:00 (target)" % (value,))
    return moment.astimezone(datetime.timezone.utc)


# -- the scratch directory -------------------------------------------------------------------------------------


def _real(path):
    return os.path.realpath(os.path.abspath(path))


def _check_scratch_place(scratch, live_dirs):
    if not os.path.isabs(scratch) or scratch == "/":
        raise ModuleFailure("scratch_dir %r: expected an absolute path of a new directory (scratch_dir)" % scratch)
    real = _real(scratch)
    for live in live_dirs:
        live_real = _real(live)
        if real == live_real or real.startswith(live_real + os.sep) or live_real.startswith(real + os.sep):
            raise ModuleFailure("scratch_dir %s is (or holds, or lies inside) the live data directory %s: a restore "
                                "never writes there; choose a new directory (scratch_dir). To take the live cluster "
                                "back in time, run pg_restore_in_place (docs/pitr.md)" % (scratch, live),
                                error_kind="refused_target")


def _check_scratch_empty(scratch, previous):
    if previous or not os.path.exists(scratch):
        return
    if not os.path.isdir(scratch) or os.listdir(scratch):
        what = "a PostgreSQL data directory" if os.path.exists(os.path.join(scratch, "PG_VERSION")) else "files"
        raise ModuleFailure("scratch_dir %s holds %s that this runbook did not make (no %s beside it): expected an "
                            "empty or absent directory; choose another (scratch_dir)"
                            % (scratch, what, os.path.basename(scratch) + MARKER_SUFFIX), error_kind="refused_target")


def marker_path(scratch):
    return scratch.rstrip(os.sep) + MARKER_SUFFIX


def log_file(scratch):
    return scratch.rstrip(os.sep) + ".log"


def read_marker(scratch):
    try:
        with open(marker_path(scratch)) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def _write_marker(scratch, params, record):
    write_atomic(marker_path(scratch), json.dumps(record, sort_keys=True, default=str) + "\n", 0o600)


def clean(scratch, params):
    """Stop a scratch server a run of ours left running, then remove its directory, log and marker."""
    if os.path.exists(os.path.join(scratch, "postmaster.pid")):
        server = Server(scratch, bin_dir=params.get("pg_bin_dir"), log_file=log_file(scratch))
        server.stop(mode="immediate", timeout=params["start_timeout"])
    shutil.rmtree(scratch, ignore_errors=True)
    for path in (log_file(scratch), marker_path(scratch)):
        if os.path.exists(path):
            os.unlink(path)


def free_port(attempts=50):
    """A loopback port nothing listens on now, BELOW the kernel's ephemeral range (the scratch binds it a moment
    later; a taken port fails its start, named in the error). Not bind(0): that hands out an ephemeral port, which
    the kernel may give to an outgoing connection's source port before the scratch binds it (the lab's ports keep
    below that range for the same reason)."""
    low = _ephemeral_low()
    for _attempt in range(attempts):
        port = random.randint(max(1024, low - 12000), low - 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            sock.close()
    raise ModuleFailure("no free loopback port below %d for the scratch instance after %d tries: give scratch_port"
                        % (low, attempts))


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


# -- backup and WAL --------------------------------------------------------------------------------------------


def _choose(stanzas, target, label):
    try:
        return plan.choose_backup(plan.usable_backups(stanzas), target, label)
    except plan.PlanError as exc:
        raise ModuleFailure(str(exc), error_kind="no_backup") from None


def archive_id_of(stanzas, backup):
    db_id = (backup.get("database") or {}).get("id")
    for stanza in stanzas if isinstance(stanzas, list) else [stanzas]:
        for archive in stanza.get("archive") or []:
            if (archive.get("database") or {}).get("id") == db_id:
                return archive["id"]
    raise ModuleFailure("the repository has no WAL archive for the database of backup %s (database id %s)"
                        % (backup["label"], db_id), error_kind="wal_gap")


def check_wal(driver, stanzas, backup, target, timeline=None):
    """Every WAL segment the restore reads is in the archive, else ModuleFailure naming the first missing one.
    timeline: the timeline recovery follows (a restore in place: the live primary's); default the newest one that
    descends from the backup's, as recovery_target_timeline = latest does."""
    archive_id = archive_id_of(stanzas, backup)
    listing = plan.archive_listing(driver.archive_listing(archive_id))
    start_tli = plan.parse_segment_name(backup["archive"]["start"])[0]
    end_tli, history = start_tli, []
    if timeline and timeline != start_tli:
        if timeline not in listing["histories"]:
            message = ("the WAL archive (%s) has no history file of timeline %d, which recovery follows from backup "
                       "%s (timeline %d): nothing was restored; choose a backup taken on timeline %d (backup_label)"
                       % (archive_id, timeline, backup["label"], start_tli, timeline))
            raise ModuleFailure(message, error_kind="wal_gap")
        end_tli = timeline
        history = plan.parse_history(driver.history(archive_id, listing["histories"][timeline]))
    for tli in sorted(listing["histories"], reverse=True) if not timeline else ():
        # recovery_target_timeline = latest: the newest one
        entries = plan.parse_history(driver.history(archive_id, listing["histories"][tli]))
        if tli > start_tli and start_tli in [entry[0] for entry in entries]:
            end_tli, history = tli, entries
            break
    end = plan.wal_end(target, backup, listing, end_tli)
    try:
        needed = plan.needed_segments(plan.parse_lsn(backup["lsn"]["start"]), end, start_tli, end_tli, history)
    except plan.PlanError as exc:
        raise ModuleFailure(str(exc), error_kind="wal_gap") from None
    missing = plan.first_missing(needed, listing["segments"])
    facts = dict(archive_id=archive_id, timeline=end_tli, first=needed[0] if needed else None,
                 last=needed[-1] if needed else None, segments=len(needed), missing=missing)
    if missing:
        raise ModuleFailure("the WAL archive (%s) lacks segment %s, needed to replay backup %s to the target %s "
                            "(segments %s to %s): nothing was restored. Find the segment (a standby's pg_wal, an "
                            "older copy of the archive), or choose a target before it (target_type lsn) or a later "
                            "backup (backup_label)" % (archive_id, missing, backup["label"],
                                                       plan.describe_target(target), needed[0], needed[-1]),
                            error_kind="wal_gap", missing_segment=missing, wal=facts)
    return facts


# -- restore, start, prove -------------------------------------------------------------------------------------


def _restore(driver, params, backup, target, scratch, port):
    owner = data_dir_owner(params["pg_data_dir"])
    parent = os.path.dirname(scratch)
    if not os.path.isdir(parent):
        raise ModuleFailure("the parent of scratch_dir, %s, does not exist (scratch_dir)" % parent)
    _write_marker(scratch, params, dict(state="restoring", label=backup["label"], target=target, port=port))
    if not os.path.isdir(scratch):  # an empty folder the operator made is used as it is
        os.mkdir(scratch, 0o700)
    os.chmod(scratch, 0o700)  # PostgreSQL refuses a data directory others can read
    if os.geteuid() == 0:
        os.chown(scratch, owner[0], owner[1])
    driver.restore(backup["label"], target, scratch)
    server = Server(scratch, bin_dir=params.get("pg_bin_dir"), log_file=log_file(scratch))
    # The scratch is no member of the cluster: its own port on loopback, no archiving into the live repository
    # (it never promotes anyway: recovery pauses at the target), no replication settings from the backup.
    server.set_auto_conf({
        "port": str(port), "listen_addresses": "127.0.0.1", "unix_socket_directories": "",
        "archive_mode": "off", "cluster_name": "pitr-scratch", "hot_standby": "on",
        "primary_conninfo": None, "primary_slot_name": None,
        "recovery_target_action": "pause" if target["type"] != "latest" else None,
    })
    if os.geteuid() == 0 and not os.path.exists(log_file(scratch)):
        write_atomic(log_file(scratch), "", 0o600, owner=owner)


def _start_and_prove(server, params, target, port, facts):
    try:
        server.start(timeout=params["start_timeout"])
    except Exception as exc:  # pg_ctl's error says little; the log says why recovery stopped
        raise ModuleFailure("the scratch instance in %s did not start: %s; its log %s ends: %s"
                            % (server.data_dir, exc, server.log_file, _log_tail(server.log_file)),
                            error_kind="recovery", **facts) from None
    conn_params = dict(host="127.0.0.1", port=port, user=params["login_user"], password=params.get("login_password"),
                       dbname=params.get("login_db") or "postgres", connect_timeout=5)

    def reached():
        conn, _error = pg.try_connect(conn_params)
        if conn is None:
            if not server.is_running():
                raise ModuleFailure("the scratch instance in %s stopped during recovery; its log %s ends: %s"
                                    % (server.data_dir, server.log_file, _log_tail(server.log_file)),
                                    error_kind="recovery", **facts)
            return None
        with conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery() AS in_recovery, "
                "CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END AS pause_state, "
                "pg_last_xact_replay_timestamp() AS last_xact_time, "
                "pg_last_wal_replay_lsn()::text AS replay_lsn").fetchone()
            done = row["pause_state"] == "paused" if target["type"] != "latest" else not row["in_recovery"]
            if not done:
                return None
            proof = dict(last_xact_time=row["last_xact_time"].isoformat() if row["last_xact_time"] else None,
                         replay_lsn=row["replay_lsn"], paused=row["pause_state"] == "paused")
            if params.get("check_query"):
                proof["check_rows"] = [dict(r) for r in conn.execute(params["check_query"]).fetchmany(100)]
            return proof

    try:
        proof = wait_for(reached, params["recovery_timeout"], interval=0.2,
                         what="the scratch instance to reach the target")[0]
    except WaitTimeout as exc:
        raise ModuleFailure("%s (recovery_timeout); its log %s ends: %s"
                            % (exc, server.log_file, _log_tail(server.log_file)), error_kind="timeout",
                            **facts) from None
    proof["port"] = port
    return json.loads(json.dumps(proof, default=str))


def _log_tail(path, lines=8):
    try:
        with open(path, errors="replace") as handle:
            return " | ".join(handle.read().strip().splitlines()[-lines:])
    except (IOError, OSError):
        return "(no log)"
